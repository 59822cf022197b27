package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/postern-dev/postern/proxy/internal/h1"
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
	f         h1.Framing
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
		c.f.Feed(p[:n])
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
// was read and reports whether its framing was sound, with the verdict
// and its number (for bodyBroken). Verdicts come in request order and
// net/http calls the handler for every request it reads on a connection
// it keeps open, so the oldest verdict is the request's own; the request
// line is checked anyway, and any doubt (no verdict, a verdict for
// another request line) counts as bad.
func (c *conn) framingOK(r *http.Request) (h1.Verdict, uint64, bool) {
	c.mu.Lock()
	v, ok := c.f.Next()
	seq := c.f.Taken()
	c.mu.Unlock()
	return v, seq, ok && !v.Bad && v.Line == h1.RequestLineHash(r.Method, r.RequestURI)
}

// bodyBroken reports whether the parser found the body of the seq-th
// request malformed.
func (c *conn) bodyBroken(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.f.BodyBroken(seq)
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
//
// It refuses the same way an absolute-form request whose authority is not
// its Host field (RFC 9112 §3.2: a client MUST send them identical). Go
// routes such a request by the authority and drops the Host field, as
// RFC 9112 §3.2.2 says; an intermediary in front that routed or cached it
// by Host would disagree about which site it is for.
//
// A chunked body the parser finds malformed where Go would read on (a
// chunk extension out of grammar) fails as it is read: the handler sees a
// body error and answers 400, and the backend never gets the whole body.
type guard struct {
	next http.Handler
	log  func(r *http.Request, reason string)
}

func (g guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// HTTP/2 (over TLS) has its own framing; the parser only follows
	// HTTP/1.x.
	if r.ProtoMajor == 1 {
		if c := connFrom(r.Context()); c != nil {
			v, seq, ok := c.framingOK(r)
			reason := "ambiguous request framing"
			if ok && r.URL.Host != "" && r.Method != http.MethodConnect &&
				(v.HostState == h1.HostLong || (v.HostState == h1.HostSeen && v.Host != h1.HostHash(r.URL.Host))) {
				ok, reason = false, "absolute-form authority differs from Host"
			}
			if !ok {
				if g.log != nil {
					g.log(r, reason)
				}
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusBadRequest)
				return
			}
			if len(r.TransferEncoding) > 0 && r.Body != nil && r.Body != http.NoBody {
				r.Body = &guardedBody{ReadCloser: r.Body, c: c, seq: seq}
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

// errMalformedChunk fails the read of a chunked body the framing parser
// found malformed.
var errMalformedChunk = errors.New("malformed chunked request body")

// guardedBody is a chunked request body that fails once the framing
// parser finds it malformed. The parser sees every byte before net/http's
// chunked reader does, so no byte past the fault is ever returned.
type guardedBody struct {
	io.ReadCloser
	c   *conn
	seq uint64
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.c.bodyBroken(b.seq) {
		return 0, errMalformedChunk
	}
	return n, err
}
