package sysio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sysIO reads and writes a TCP connection (conn): read(2) and write(2) on its non-blocking socket as raw system calls,
// waiting in the runtime's poller (with the connection's deadlines) when
// the socket is not ready, exactly as net.Conn's Read and Write do.
//
// The difference is the scheduler's. A system call entered through
// syscall.Syscall marks the goroutine's P as in a system call, and the
// runtime's monitor thread takes the P away from any call that lasts more
// than one of its ticks (20 µs and up) to run other goroutines on another
// thread. A write on a local TCP connection does the receiving side's work
// too and often lasts that long, so under load the monitor kept waking and
// the proxy's goroutines kept moving between threads: measured, 0.18
// context switches per request from the monitor alone and 9 % of the
// proxy's CPU. A read or write of a non-blocking socket never blocks, so
// nothing is gained by giving the P away during it.
type sysIO struct {
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	// A read and a write may run at once (the client watch reads while
	// a response is written): each has its own state. Two reads or two
	// writes may be called at once too (a WebSocket tunnel's copier and
	// the Transport's write loop), as net.Conn allows: each waits for the
	// other, and the bytes of one Write stay together.
	rmu, wmu sync.Mutex
	r, w     sysCall
	// For errors, shaped as net.Conn's.
	local, remote net.Addr
}

// sysCall is the buffer, count and error of a call in progress.
type sysCall struct {
	p     []byte
	n     int
	errno syscall.Errno
}

func (s *sysIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.r.p[0])), uintptr(len(s.r.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.r.n, s.r.errno = int(n), e
		return true
	}
}

func (s *sysIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.r = sysCall{p: p}
	err := s.rc.Read(s.readFn)
	s.r.p = nil
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case s.r.errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", s.r.errno))
	case s.r.n == 0:
		return 0, io.EOF
	}
	return s.r.n, nil
}

func (s *sysIO) write(fd uintptr) bool {
	for s.w.n < len(s.w.p) {
		b := s.w.p[s.w.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			s.w.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.w.errno = e
			return true
		}
	}
	return true
}

func (s *sysIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.w = sysCall{p: p}
	err := s.rc.Write(s.writeFn)
	s.w.p = nil
	switch {
	case err != nil:
		return s.w.n, s.opError("write", err)
	case s.w.errno != 0:
		return s.w.n, s.opError("write", os.NewSyscallError("write", s.w.errno))
	}
	return s.w.n, nil
}

// opError is err as net.Conn's Read or Write returns it: a *net.OpError
// of op (not the "raw-read" or "raw-write" of a RawConn's).
func (s *sysIO) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.local, Addr: s.remote, Err: err}
}

// conn is a TCP connection whose reads and writes go through sysIO.
// Every TCP connection the proxy accepts (sysListener) or dials (the fast
// path's and the Transport's) is one.
type conn struct {
	*net.TCPConn
	io *sysIO
}

// Wrap returns c with its reads and writes as raw system calls (sysIO) when
// it is a TCP connection, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sysIO{rc: rc, local: tc.LocalAddr(), remote: tc.RemoteAddr()}
	s.readFn = s.read
	s.writeFn = s.write
	return &conn{TCPConn: tc, io: s}
}

func (c *conn) Read(p []byte) (int, error)  { return c.io.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.io.Write(p) }
