package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// h1Engine is the HTTP/1.1 fast path (work in progress on this branch): it
// reads requests off a client connection itself and proxies the ones
// parseH1Head takes, on connections of its own to the endpoints, in the
// connection's goroutine: no goroutine hand-offs, one write per request and
// per response. The first request it does not take, and the rest of the
// connection with it, goes to handoff (net/http, the framing guard and the
// Handler, as without the fast path), with the bytes already read.
//
// Not yet on this branch (the Handler path still does these, which is why
// the engine only takes requests that need none of them): metrics and the
// access log, retries and passive health, per-route timeouts and body
// limits, trusted proxies, backends other than plain HTTP, percent-encoded
// paths.
type h1Engine struct {
	h       *Handler
	pool    *h1Pool
	handoff func(net.Conn)
	// readHeaderTimeout and idleTimeout bound the wait for a request head
	// and for the next request on a kept-alive connection.
	readHeaderTimeout, idleTimeout time.Duration
	maxHeaderBytes                 int
}

// errHandoff means: this request is net/http's.
var errHandoff = errors.New("request handed to net/http")

// serve runs the connection until it ends or is handed off.
func (e *h1Engine) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, max(e.maxHeaderBytes, 4096))
	bw := bufio.NewWriterSize(c, 16<<10)
	clientIP := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		clientIP = a.IP.String()
	}
	var head h1Head
	var resp h1Resp
	first := true
	for {
		wait := e.idleTimeout
		if first {
			wait = e.readHeaderTimeout
		}
		first = false
		_ = c.SetReadDeadline(time.Now().Add(wait))
		raw, err := peekHead(br, e.maxHeaderBytes)
		if err != nil {
			if errors.Is(err, errHandoff) {
				e.handoff(replayConn(c, br))
				return
			}
			c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if !parseH1Head(raw, &head) {
			e.handoff(replayConn(c, br))
			return
		}
		rt, ep := e.route(&head)
		if rt == nil {
			e.handoff(replayConn(c, br))
			return
		}
		keep, err := e.proxy(br, bw, len(raw), &head, &resp, ep, clientIP)
		if err != nil || !keep {
			_ = bw.Flush()
			c.Close()
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				c.Close()
				return
			}
		}
	}
}

// route returns the route and endpoint for the request, or nil when the
// engine leaves the request to net/http.
func (e *h1Engine) route(head *h1Head) (*route.Route, *route.Endpoint) {
	path := head.target
	for i, c := range path {
		if c == '?' {
			path = path[:i]
			break
		}
		if c == '%' {
			return nil, nil // Lookup wants the decoded path: net/http decodes it
		}
	}
	t := e.h.table.Load()
	if th := t.TLSHost(string(head.host)); th != nil && (th.Redirect || th.ACME) {
		return nil, nil // PlainHTTP redirects it or answers the ACME challenge
	}
	rt := t.Lookup(string(head.host), string(path))
	if rt == nil || rt.Backend.Protocol != "" && rt.Backend.Protocol != route.ProtocolHTTP {
		return nil, nil
	}
	ep := e.h.balancers.Pick(rt.Backend, nil)
	if ep == nil {
		return nil, nil
	}
	return rt, ep
}

// proxy sends the request whose head is the first n bytes of br to ep and
// relays the response; keep reports whether the client connection can
// serve another request.
func (e *h1Engine) proxy(br *bufio.Reader, bw *bufio.Writer, n int, head *h1Head, resp *h1Resp, ep *route.Endpoint, clientIP string) (keep bool, err error) {
	up, reused, err := e.pool.get(ep.Address)
	if err != nil {
		_, _ = br.Discard(n)
		writeStatus(bw, 502, "Bad Gateway")
		return false, nil
	}
	inflight := e.h.inflight.Acquire(ep.Address)
	defer inflight.Release()

	bodyless := !head.chunked && head.contentLength <= 0
	writeRequestHead(up.bw, head, clientIP)
	if !bodyless {
		// The head's bytes are still in br (head's slices point there):
		// only once they are written can they go, and the body follows.
		_, _ = br.Discard(n)
		switch {
		case head.chunked:
			_, err = h1CopyChunked(up.bw, br)
		default:
			_, err = io.CopyN(up.bw, br, head.contentLength)
		}
		if err != nil {
			up.c.Close()
			return false, err
		}
	}
	err = up.bw.Flush()
	var raw []byte
	if err == nil {
		raw, err = peekHead(up.br, 64<<10)
	}
	if err != nil && reused && bodyless && up.br.Buffered() == 0 {
		// An idle connection the backend had closed: send the request
		// again, once, on a new one (nothing of it can have been acted
		// on: the backend read nothing before closing).
		up.c.Close()
		if up, err = e.pool.dial(ep.Address); err == nil {
			writeRequestHead(up.bw, head, clientIP)
			if err = up.bw.Flush(); err == nil {
				raw, err = peekHead(up.br, 64<<10)
			}
		}
	}
	if bodyless {
		_, _ = br.Discard(n)
	}
	if err != nil {
		if up != nil {
			up.c.Close()
		}
		writeStatus(bw, 502, "Bad Gateway")
		return false, nil
	}
	if !parseH1Resp(raw, string(head.method) == "HEAD", resp) || resp.status < 200 {
		// 1xx before the final response: left to the next step of the
		// fast path; for now the client gets a 502, as from a broken
		// backend.
		up.c.Close()
		writeStatus(bw, 502, "Bad Gateway")
		return false, nil
	}
	o := out{bw}
	o.bytes(raw[:12])
	if len(resp.reason) > 0 {
		o.str(" ")
		o.bytes(resp.reason)
	}
	o.str("\r\n")
	for _, f := range resp.fields {
		if hopByHop(f.name) {
			continue
		}
		o.field(f)
	}
	keep = !head.closeConn && resp.body != h1BodyClose
	switch {
	case resp.body == h1BodyChunked:
		o.str("Transfer-Encoding: chunked\r\n")
	case !keep:
		o.str("Connection: close\r\n")
	}
	o.str("\r\n")
	_, _ = up.br.Discard(len(raw))
	switch resp.body {
	case h1BodyLength:
		_, err = io.CopyN(bw, up.br, resp.contentLength)
	case h1BodyChunked:
		_, err = h1CopyChunked(bw, up.br)
	case h1BodyClose:
		_, err = io.Copy(bw, up.br)
		resp.closeConn = true
	}
	if err != nil || resp.closeConn {
		up.c.Close()
	} else {
		e.pool.put(ep.Address, up)
	}
	return keep && err == nil, err
}

// writeRequestHead writes the request line and fields of head to w, with
// the hop-by-hop fields dropped and the forwarding fields set.
func writeRequestHead(bw *bufio.Writer, head *h1Head, clientIP string) {
	w := out{bw}
	w.bytes(head.method)
	w.str(" ")
	w.bytes(head.target)
	w.str(" HTTP/1.1\r\n")
	for _, f := range head.fields {
		if hopByHop(f.name) || isForwardedField(f.name) {
			continue
		}
		w.field(f)
	}
	if head.chunked {
		w.str("Transfer-Encoding: chunked\r\n")
	}
	w.str("X-Forwarded-For: ")
	w.str(clientIP)
	w.str("\r\nX-Real-Ip: ")
	w.str(clientIP)
	w.str("\r\nX-Forwarded-Host: ")
	w.bytes(head.host)
	w.str("\r\nX-Forwarded-Proto: http\r\n\r\n")
}

// out writes to a bufio.Writer, whose error is sticky: it is checked once,
// at the Flush that follows.
type out struct{ w *bufio.Writer }

func (o out) str(s string)   { _, _ = o.w.WriteString(s) }
func (o out) bytes(b []byte) { _, _ = o.w.Write(b) }
func (o out) field(f h1Field) {
	o.bytes(f.name)
	o.str(": ")
	o.bytes(f.value)
	o.str("\r\n")
}

// peekHead returns the head at the start of br (still buffered), reading
// more as needed; errHandoff when it does not fit in limit bytes.
func peekHead(br *bufio.Reader, limit int) ([]byte, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := h1HeadEnd(buf); end >= 0 {
			return buf[:end], nil
		}
		if len(buf) >= limit || len(buf) == br.Size() {
			return nil, errHandoff
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && !errors.Is(err, io.EOF) {
				return nil, err
			}
			if len(buf) > 0 {
				return nil, errHandoff // a partial head, then EOF: net/http answers it
			}
			return nil, err
		}
	}
}

// hopByHop reports whether a field is hop-by-hop (RFC 9110 §7.6.1), or
// framing the engine writes itself.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return asciiEqualFold(name, "te")
	case 7:
		return asciiEqualFold(name, "upgrade") || asciiEqualFold(name, "trailer")
	case 10:
		return asciiEqualFold(name, "connection") || asciiEqualFold(name, "keep-alive")
	case 16:
		return asciiEqualFold(name, "proxy-connection")
	case 17:
		return asciiEqualFold(name, "transfer-encoding")
	case 18:
		return asciiEqualFold(name, "proxy-authenticate")
	case 19:
		return asciiEqualFold(name, "proxy-authorization")
	}
	return false
}

// isForwardedField reports the fields the engine sets itself: a client's
// own values are dropped (no trusted proxies on this path yet).
func isForwardedField(name []byte) bool {
	return asciiEqualFold(name, "x-forwarded-for") || asciiEqualFold(name, "x-real-ip") ||
		asciiEqualFold(name, "x-forwarded-host") || asciiEqualFold(name, "x-forwarded-proto") ||
		asciiEqualFold(name, "forwarded")
}

func writeStatus(bw *bufio.Writer, code int, text string) {
	o := out{bw}
	o.str("HTTP/1.1 ")
	o.str(strconv.Itoa(code))
	o.str(" ")
	o.str(text)
	o.str("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	o.str(strconv.Itoa(len(text) + 1))
	o.str("\r\n\r\n")
	o.str(text)
	o.str("\n")
}

// replayConn is c with what br already read from it in front.
func replayConn(c net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return c
	}
	b, _ := br.Peek(n)
	return &replayedConn{Conn: c, r: io.MultiReader(bufferedCopy(b), c)}
}

func bufferedCopy(b []byte) io.Reader {
	c := make([]byte, len(b))
	copy(c, b)
	return &byteReader{b: c}
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

type replayedConn struct {
	net.Conn
	r io.Reader
}

func (c *replayedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// h1Pool keeps idle connections to endpoints, by address.
type h1Pool struct {
	dialTimeout time.Duration
	maxIdle     int
	mu          sync.Mutex
	idle        map[string][]*h1UpConn
}

type h1UpConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// get returns an idle connection to addr (reused true) or a new one.
func (p *h1Pool) get(addr string) (u *h1UpConn, reused bool, err error) {
	p.mu.Lock()
	if list := p.idle[addr]; len(list) > 0 {
		u := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		return u, true, nil
	}
	p.mu.Unlock()
	u, err = p.dial(addr)
	return u, false, err
}

// dial opens a new connection to addr.
func (p *h1Pool) dial(addr string) (*h1UpConn, error) {
	d := net.Dialer{Timeout: p.dialTimeout}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &h1UpConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 4<<10)}, nil
}

func (p *h1Pool) put(addr string, u *h1UpConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = make(map[string][]*h1UpConn)
	}
	if len(p.idle[addr]) >= p.maxIdle {
		u.c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], u)
}

// listen runs the fast path on the connections of ln and returns the
// listener net/http serves: the connections the engine hands off.
func (e *h1Engine) listen(ln net.Listener) net.Listener {
	hl := &handoffListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	e.handoff = func(c net.Conn) {
		select {
		case hl.conns <- c:
		case <-hl.done:
			c.Close()
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				hl.fail(err)
				return
			}
			go e.serve(c)
		}
	}()
	return hl
}

// handoffListener gives net/http the connections the fast path hands off.
type handoffListener struct {
	net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *handoffListener) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *handoffListener) Close() error {
	l.fail(net.ErrClosed)
	return l.Listener.Close()
}
