package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// conn is the net.Conn the Server hands to net/http: it feeds every byte
// read to a framing parser, so that the framing guard can ask, for the
// request being served, whether its framing was ambiguous.
type conn struct {
	net.Conn

	// hijacked stops the parsing once net/http hands the connection to a
	// handler (a WebSocket tunnel): what follows is not HTTP/1.1.
	hijacked atomic.Bool
	// onClose, if set, runs once when the connection is closed.
	onClose func(*conn)

	mu        sync.Mutex // guards f: Read feeds it, the handler takes verdicts
	f         framing
	closeOnce sync.Once
}

func newConn(c net.Conn, onClose func(*conn)) *conn {
	return &conn{Conn: c, onClose: onClose}
}

// framedConn is a connection read through a framing parser: a *conn, or a
// *tlsConn around one.
type framedConn interface{ framed() *conn }

func (c *conn) framed() *conn { return c }

// Read reads from the connection and advances the framing parser over what
// was read. net/http never reads a connection from two goroutines at once.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.hijacked.Load() {
		c.mu.Lock()
		c.f.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// Close closes the connection.
func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.onClose != nil {
		c.closeOnce.Do(func() { c.onClose(c) })
	}
	return err
}

// CloseWrite half-closes the connection when the underlying one can;
// net/http uses it to flush an error response before closing (RFC 9112
// §9.6).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// framingOK takes the verdict of the oldest request whose header section
// was read and reports whether its framing was sound. Verdicts come in
// request order and net/http calls the handler for every request it reads
// on a connection it keeps open, so the oldest verdict is the request's
// own; the request line is checked anyway, and any doubt (no verdict, a
// verdict for another request line) counts as bad.
func (c *conn) framingOK(r *http.Request) bool {
	c.mu.Lock()
	v, ok := c.f.next()
	c.mu.Unlock()
	return ok && !v.bad && v.line == requestLineHash(r.Method, r.RequestURI)
}

type connKey struct{}

// connFrom returns the conn a request came in on, or nil when it did not
// come through a Server.
func connFrom(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// listener wraps every accepted connection in a conn.
type listener struct {
	net.Listener
	onClose func(*conn)
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c, l.onClose), nil
}

// guard answers 400 to a request whose framing its connection's parser
// found ambiguous, and closes the connection: after such a request the
// client and any intermediary in front may disagree about where the next
// request starts (RFC 9112 §11.2), so nothing more is read from it.
type guard struct {
	next http.Handler
	log  func(r *http.Request)
}

func (g guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// HTTP/2 (over TLS) has its own framing; the parser only follows
	// HTTP/1.x.
	if r.ProtoMajor == 1 {
		if c := connFrom(r.Context()); c != nil && !c.framingOK(r) {
			if g.log != nil {
				g.log(r)
			}
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusBadRequest)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}
