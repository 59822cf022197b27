package upstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/postern-dev/postern/proxy/internal/sysio"
)

// Conn is an engine's HTTP/1.1 keep-alive connection to an endpoint. It
// records the first read and write errors, so that a failed copy can tell
// whose side broke; while ReadIdle is set every read must get something
// within it (the route's idle timeout), and while WriteIdle is set every
// write must finish within it (a request body the endpoint stops reading).
type Conn struct {
	// R and W read and write the connection, buffered.
	R *bufio.Reader
	W *bufio.Writer
	// ReadIdle, when not zero, bounds each read.
	ReadIdle time.Duration
	// WriteIdle, when not zero, bounds each write.
	WriteIdle time.Duration
	// Until, when not zero, is a deadline no read goes past, ReadIdle or
	// not (a route's request or attempt timeout).
	Until time.Time

	c      net.Conn
	rerr   error
	werr   error
	idleAt time.Time // when it was put in the pool
}

// Sizes of a Conn's buffers: a response head must fit the reader's.
const (
	connReadBuf  = 16 << 10
	connWriteBuf = 4 << 10
)

// Dial opens a connection to addr within timeout.
func Dial(addr string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &Conn{c: sysio.Wrap(nc)}
	u.R = bufio.NewReaderSize(connSide{u}, connReadBuf)
	u.W = bufio.NewWriterSize(connSide{u}, connWriteBuf)
	return u, nil
}

// Close closes the connection.
func (u *Conn) Close() { _ = u.c.Close() }

// SetReadDeadline sets the deadline of the connection's reads.
func (u *Conn) SetReadDeadline(t time.Time) { _ = u.c.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the connection's writes.
func (u *Conn) SetWriteDeadline(t time.Time) { _ = u.c.SetWriteDeadline(t) }

// ReadErr returns the first error reading the connection, if any.
func (u *Conn) ReadErr() error { return u.rerr }

// WriteErr returns the first error writing the connection, if any.
func (u *Conn) WriteErr() error { return u.werr }

// Alive reports whether an idle connection is still open: a read that
// would block means it is (the endpoint sends nothing unasked).
func (u *Conn) Alive() bool {
	_ = u.c.SetReadDeadline(time.Now())
	_, err := u.R.Peek(1)
	_ = u.c.SetReadDeadline(time.Time{})
	if IsTimeout(err) {
		u.rerr = nil
		return true
	}
	return false
}

type connSide struct{ u *Conn }

func (s connSide) Read(p []byte) (int, error) {
	u := s.u
	if u.ReadIdle > 0 {
		d := time.Now().Add(u.ReadIdle)
		if !u.Until.IsZero() && u.Until.Before(d) {
			d = u.Until
		}
		_ = u.c.SetReadDeadline(d)
	}
	n, err := u.c.Read(p)
	if err != nil && u.rerr == nil {
		u.rerr = err
	}
	return n, err
}

func (s connSide) Write(p []byte) (int, error) {
	u := s.u
	if u.WriteIdle > 0 {
		_ = u.c.SetWriteDeadline(time.Now().Add(u.WriteIdle))
	}
	n, err := u.c.Write(p)
	if err != nil && u.werr == nil {
		u.werr = err
	}
	return n, err
}

// GetConn returns an idle HTTP/1.1 connection of the endpoint, or nil.
func (ep *Pools) GetConn() *Conn {
	ep.h1mu.Lock()
	defer ep.h1mu.Unlock()
	for len(ep.h1idle) > 0 {
		u := ep.h1idle[len(ep.h1idle)-1]
		ep.h1idle = ep.h1idle[:len(ep.h1idle)-1]
		if time.Since(u.idleAt) < idleConnTimeout {
			u.rerr, u.werr = nil, nil
			return u
		}
		u.Close()
	}
	return nil
}

// PutConn keeps u for the next request to the endpoint, or closes it when
// the pool is full or the endpoint was removed.
func (ep *Pools) PutConn(u *Conn) {
	u.idleAt = time.Now()
	ep.h1mu.Lock()
	defer ep.h1mu.Unlock()
	if len(ep.h1idle) >= ep.perHost || ep.removed.Load() {
		u.Close()
		return
	}
	ep.h1idle = append(ep.h1idle, u)
}

// h1CloseIdle closes the idle HTTP/1.1 connections of the endpoint.
func (ep *Pools) h1CloseIdle() {
	ep.h1mu.Lock()
	idle := ep.h1idle
	ep.h1idle = nil
	ep.h1mu.Unlock()
	for _, u := range idle {
		u.Close()
	}
}

// IsTimeout reports whether err is a timeout (a net.Error that says so).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
