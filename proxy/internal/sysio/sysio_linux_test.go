package sysio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// A write larger than the socket buffers waits in the poller (EAGAIN) and
// resumes; a read and a write run at once on one sysIO; both sides see
// every byte, in order.
func TestSysIOLargeTransfersBothWays(t *testing.T) {
	a, b := tcpPair(t)
	// Small socket buffers: every write fills them and waits (EAGAIN).
	for _, c := range []*net.TCPConn{a, b} {
		_ = c.SetWriteBuffer(16 << 10)
		_ = c.SetReadBuffer(16 << 10)
	}
	sa, sb := Wrap(a), Wrap(b)
	if _, ok := sa.(*conn); !ok {
		t.Fatalf("Wrap(a TCP connection) = %T, want *conn", sa)
	}
	payload := func(seed byte) []byte {
		p := make([]byte, 8<<20)
		for i := range p {
			p[i] = byte(i*7) + seed
		}
		return p
	}
	toB, toA := payload(1), payload(2)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(w io.Writer, p []byte) {
		defer wg.Done()
		n, err := w.Write(p)
		if err != nil || n != len(p) {
			errs <- errors.Join(err, io.ErrShortWrite)
		}
	}
	got := make([][]byte, 2)
	recv := func(r io.Reader, i, n int) {
		defer wg.Done()
		buf := make([]byte, n)
		_, err := io.ReadFull(r, buf)
		if err != nil {
			errs <- err
		}
		got[i] = buf
	}
	wg.Add(4)
	go send(sa, toB)
	go send(sb, toA)
	go recv(sb, 0, len(toB))
	go recv(sa, 1, len(toA))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0], toB) || !bytes.Equal(got[1], toA) {
		t.Fatal("bytes received differ from bytes sent")
	}
}

// Writes from several goroutines at once, as net.Conn allows them (a
// WebSocket tunnel's copier beside the Transport's write loop): every
// Write's bytes arrive whole and together.
func TestSysIOConcurrentWrites(t *testing.T) {
	a, b := tcpPair(t)
	_ = a.SetWriteBuffer(16 << 10)
	w := Wrap(a)
	const writers, writes, size = 8, 200, 1024
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			block := bytes.Repeat([]byte{byte('a' + g)}, size)
			for range writes {
				if _, err := w.Write(block); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make([]byte, writers*writes*size)
	_ = b.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(Wrap(b), got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	count := map[byte]int{}
	for i := 0; i < len(got); i += size {
		block := got[i : i+size]
		if !bytes.Equal(block, bytes.Repeat(block[:1], size)) {
			t.Fatalf("the block at %d mixes two writes", i)
		}
		count[block[0]]++
	}
	for g := range writers {
		if n := count[byte('a'+g)]; n != writes {
			t.Errorf("writer %d: %d blocks arrived, want %d", g, n, writes)
		}
	}
}

// End of stream, a deadline, a reset and a close give the errors
// net.Conn's Read gives, so that callers that test them (isTimeout,
// errors.Is) behave the same.
func TestSysIOErrorsAsNetConn(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		a, b := tcpPair(t)
		if _, err := b.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		b.Close()
		got, err := io.ReadAll(Wrap(a))
		if err != nil || string(got) != "bye" {
			t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
		}
		if n, err := Wrap(a).Read(make([]byte, 1)); n != 0 || err != io.EOF { //nolint:errorlint // Read returns io.EOF itself, unwrapped
			t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		a, _ := tcpPair(t)
		_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := Wrap(a).Read(make([]byte, 1))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || !isTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past the deadline = %v; want a timeout *net.OpError of op read", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := tcpPair(t)
		_ = b.SetLinger(0)
		b.Close()
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := Wrap(a).Read(make([]byte, 1))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read of a reset connection = %v; want a *net.OpError of op read with ECONNRESET", err)
		}
		_, err = Wrap(a).Write([]byte("x"))
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Write to a reset connection = %v; want a *net.OpError of op write with EPIPE or ECONNRESET", err)
		}
	})
	t.Run("closed while reading", func(t *testing.T) {
		a, _ := tcpPair(t)
		done := make(chan error, 1)
		go func() {
			_, err := Wrap(a).Read(make([]byte, 1))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		a.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read of a connection closed under it = %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read did not return after Close")
		}
	})
}

// Wrap wraps TCP connections only; the wrapper keeps the
// connection's other methods (CloseWrite, deadlines).
func TestSysConnOf(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if c := Wrap(p1); c != p1 {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", c)
	}
	a, b := tcpPair(t)
	c := Wrap(a)
	if _, ok := c.(*conn); !ok {
		t.Fatalf("Wrap(TCP) = %T, want *conn", c)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "ping" {
		t.Fatalf("peer read %q, %v; want \"ping\" then the end", got, err)
	}
}

// Listener, which Serve and ServeTLS put in front of everything, hands
// out TCP connections wrapped.
func TestSysListener(t *testing.T) {
	ln := Listener{listen(t)}
	defer ln.Close()
	go func() {
		c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			_, _ = c.Write([]byte("hi"))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*conn); !ok {
		t.Fatalf("Accept = %T, want *conn", c)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// listen listens on a free port of 127.0.0.1.
func listen(t testing.TB) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
