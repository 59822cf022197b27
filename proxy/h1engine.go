package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/internal/h1"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/upstream"
)

// h1Engine is the HTTP/1.1 fast path of a listener, plain or TLS. It reads
// requests off a client connection itself, has the pipeline decide each
// (the same Listener.Decide the net/http adapter calls), and carries the
// decision out in the client connection's goroutine: a local answer
// written at once, or a forward on keep-alive connections of the
// cluster's pools to the endpoints. No goroutine hand-offs, no
// http.Request, one write per request and per response: a request costs a
// fraction of the CPU it costs through net/http and httputil.ReverseProxy
// (BENCHMARKS.md).
//
// It hands a request, and the rest of its connection, to net/http (the
// framing guard, then the net/http adapter, which decides it anew) only
// when it cannot carry it: a head its strict parser refuses (an upgrade,
// Expect, an absolute-form target, HTTP/1.0, a field net/http might read
// differently), a head larger than its buffer, a route to a backend it
// does not speak to (HTTPS, H2C, gRPC). Each hand-off is counted by reason
// in postern_proxy_fastpath_handoffs_total.
type h1Engine struct {
	l       *pipeline.Listener // set by Serve or ServeTLS before any connection
	cluster *upstream.Cluster
	mirror  *mirrorer
	sink    *observe.Sink
	metrics *observe.Metrics // open connections, hand-offs
	// readHeaderTimeout and idleTimeout bound the wait for a request head
	// and for the next request on a kept-alive connection.
	readHeaderTimeout, idleTimeout time.Duration
	maxHeaderBytes                 int

	served  atomic.Int64 // requests decided here; tests read it
	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*h1ClientConn]struct{}
}

// h1ClientConn is a client connection the engine serves, with what its
// requests share.
type h1ClientConn struct {
	net.Conn
	idle atomic.Bool // waiting for a request head: Shutdown may close it
	// handoff gives the connection, with the bytes read put back in
	// front, to net/http.
	handoff func(net.Conn)
	// secure is set on a TLS connection (ServeTLS), serverName is its SNI.
	secure     bool
	serverName string
	peerCerts  []*x509.Certificate // the client's certificates, on TLS

	br     *bufio.Reader
	bw     *bufio.Writer
	remote string     // the peer as "ip:port"
	ip     string     // the peer's IP as text; empty when not over IP
	peer   netip.Addr // the peer's IP
	head   h1.Head
	resp   h1.Resp
	in     h1In
	x      pipeline.Exchange
}

// h1ClientBufSize is the size of the read and the write buffer of a
// client connection the engine serves: what an idle keep-alive connection
// costs besides its goroutine. A request head that does not fit goes to
// net/http, which takes up to --max-header-bytes.
const h1ClientBufSize = 8 << 10

// The buffers of client connections, reused across connections.
var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ClientBufSize) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1ClientBufSize) }}
)

// errHandoff means: this request is net/http's.
var errHandoff = errors.New("request handed to net/http")

// serve runs the connection until it ends or is handed off (cc.handoff).
func (e *h1Engine) serve(cc *h1ClientConn) {
	c := cc.Conn
	if !e.track(cc) {
		c.Close()
		return
	}
	defer e.untrack(cc)
	cc.br = h1Readers.Get().(*bufio.Reader)
	cc.bw = h1Writers.Get().(*bufio.Writer)
	cc.br.Reset(c)
	cc.bw.Reset(c)
	defer func() {
		// Nothing refers to the buffers any more: a hand-off copied
		// what br held, and the client watch has ended.
		cc.br.Reset(nil)
		cc.bw.Reset(nil)
		h1Readers.Put(cc.br)
		h1Writers.Put(cc.bw)
	}()
	cc.remote = c.RemoteAddr().String()
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.IP.String()
		cc.peer = a.AddrPort().Addr().Unmap()
	}
	for first := true; ; first = false {
		raw, ok := e.nextHead(cc, first)
		if !ok || !e.serveOne(cc, raw) {
			return
		}
	}
}

// nextHead waits for the next request head on cc (the first one within
// the read header timeout, later ones within the idle timeout) and
// returns it, still buffered. false means the connection is done: closed,
// or handed off because the head does not fit the buffer.
func (e *h1Engine) nextHead(cc *h1ClientConn, first bool) ([]byte, bool) {
	c, br := cc.Conn, cc.br
	wait := e.idleTimeout
	if first {
		wait = e.readHeaderTimeout
	}
	cc.idle.Store(true)
	if e.closing.Load() && br.Buffered() == 0 {
		c.Close()
		return nil, false
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if br.Buffered() == 0 {
		yieldBeforeRead()
	}
	raw, err := peekHead(br, min(e.maxHeaderBytes, h1ClientBufSize))
	cc.idle.Store(false)
	switch {
	case errors.Is(err, errHandoff):
		e.handOff(cc, observe.HandoffHeadSize)
		return nil, false
	case err != nil:
		c.Close()
		return nil, false
	}
	return raw, true
}

// serveOne serves the request whose head raw is: parsed, decided, answered
// or forwarded, recorded. false means the connection is done: closed, or
// handed off.
func (e *h1Engine) serveOne(cc *h1ClientConn, raw []byte) bool {
	c := cc.Conn
	if reason := parseHead(raw, &cc.head); reason != "" {
		e.handOff(cc, reason)
		return false
	}
	if cc.head.Chunked || cc.head.ContentLength > 0 {
		// Bodies have no read timeout (uploads may be long). A body-less
		// request leaves the deadline be: the next read of the
		// connection is the next head, which sets its own.
		_ = c.SetReadDeadline(time.Time{})
	}
	ex := h1Exchange{cc: cc, head: &cc.head, resp: &cc.resp, x: &cc.x, n: len(raw)}
	if e.sink.On() {
		ex.start = time.Now()
	}
	if !e.decide(&ex) {
		e.handOff(cc, cc.x.Handoff)
		return false
	}
	e.served.Add(1)
	if e.sink.WantsPath() {
		ex.path = strings.Clone(cc.in.path) // the head's bytes may go before the record is made
	}
	var keep bool
	if cc.x.Reply.Status != 0 {
		keep = e.reply(&ex)
	} else {
		keep = e.forward(&ex)
		if ex.mirror != nil {
			e.sendMirror(&ex)
		}
	}
	cc.x.Done()
	e.record(&ex)
	if !keep || e.closing.Load() {
		_ = cc.bw.Flush()
		c.Close()
		return false
	}
	if cc.br.Buffered() == 0 {
		// Nothing pipelined waits: the answer goes out now.
		if err := cc.bw.Flush(); err != nil {
			c.Close()
			return false
		}
	}
	return true
}

// decide has the pipeline decide ex's request; false means hand it off
// (x.Handoff says why).
func (e *h1Engine) decide(ex *h1Exchange) bool {
	cc, x := ex.cc, ex.x
	if !cc.in.reset(&cc.head) {
		x.Handoff = observe.HandoffFraming // a path net/http refuses (a bad escape), as it does
		return false
	}
	x.Reset()
	x.In = &cc.in
	x.Remote, x.PeerIP, x.Peer = cc.remote, cc.ip, cc.peer
	x.ServerName, x.Secure, x.PeerCertificates = cc.serverName, cc.secure, cc.peerCerts
	x.Proto, x.ProtoMajor = "HTTP/1.1", 1
	x.Caps = pipeline.CapH1
	e.l.Decide(x)
	if x.Handoff != "" {
		x.Done() // the engine it goes to decides it anew
		return false
	}
	return true
}

// parseHead parses raw into head and returns why the engine does not
// serve it (an observe.Handoff* reason), or "".
func parseHead(raw []byte, head *h1.Head) string {
	if h1.ParseHead(raw, head) {
		return ""
	}
	return handoffReason(raw)
}

// handoffReason says why ParseHead refused raw, for the hand-off metric:
// an upgrade, an Expect field, a request line outside origin-form
// HTTP/1.1, or anything else its framing rules refuse.
func handoffReason(raw []byte) string {
	if bytes.Equal(raw, []byte("PRI * HTTP/2.0\r\n\r\n")) {
		return observe.HandoffH2C // the preface's first part
	}
	line, rest, _ := bytes.Cut(raw, []byte("\r\n"))
	if sp := bytes.LastIndexByte(line, ' '); sp < 0 || string(line[sp+1:]) != "HTTP/1.1" ||
		!bytes.Contains(line, []byte(" /")) {
		return observe.HandoffTarget
	}
	for len(rest) > 0 {
		var f []byte
		f, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, _, _ := bytes.Cut(f, []byte(":"))
		switch {
		case h1.EqualFold(name, "upgrade"):
			return observe.HandoffUpgrade
		case h1.EqualFold(name, "expect"):
			return observe.HandoffExpect
		}
	}
	return observe.HandoffFraming
}

// handOff gives the connection to net/http, after the responses the
// engine still holds (pipelined requests) and with the bytes it read.
func (e *h1Engine) handOff(cc *h1ClientConn, reason string) {
	e.metrics.Handoff(reason)
	if err := cc.bw.Flush(); err != nil {
		cc.Close()
		return
	}
	// Uncounted before net/http counts it: never two at once in
	// open_connections.
	e.untrack(cc)
	cc.handoff(replayConn(cc.Conn, cc.br))
}

// record hands the exchange's Record to the sink.
func (e *h1Engine) record(ex *h1Exchange) {
	if !e.sink.On() {
		return
	}
	x := ex.x
	rec := observe.Record{
		Start:    ex.start,
		Duration: time.Since(ex.start),
		ID:       x.ID,
		Client:   x.Client,
		Method:   x.In.Method(),
		Host:     ex.cc.in.host,
		Path:     ex.path,
		Proto:    "HTTP/1.1",
		Status:   ex.code,
		BytesIn:  ex.bytesIn,
		BytesOut: ex.bytesOut,
		Route:    x.Route,
		Backend:  x.Backend,
	}
	if ex.ep != nil {
		rec.Upstream = ex.ep.Address
	}
	if ex.tried {
		rec.Attempted, rec.UpstreamDuration = true, ex.upstream
	}
	e.sink.Done(&rec)
}

// peekHead returns the head at the start of br (still buffered), reading
// more as needed; errHandoff when it does not fit in limit bytes.
func peekHead(br *bufio.Reader, limit int) ([]byte, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := h1.HeadEnd(buf); end >= 0 {
			return buf[:end], nil
		}
		if len(buf) >= limit || len(buf) == br.Size() {
			return nil, errHandoff
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				return nil, errHandoff // a partial head, then EOF: net/http answers it
			}
			return nil, err
		}
	}
}

// yieldBeforeRead lets the other goroutines that are ready run before this
// one reads a connection whose bytes are most likely not in yet: the next
// request of a keep-alive client that was just answered, the response of
// an endpoint that was just sent a request. A read that finds nothing
// costs a system call (EAGAIN) and a park and wake-up in the runtime's
// poller; after the others' turn the bytes are usually there. With
// nothing else ready it returns at once (BENCHMARKS.md has what it saves).
func yieldBeforeRead() { runtime.Gosched() }

// replayConn is c with what br already read from it in front.
func replayConn(c net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return c
	}
	b, _ := br.Peek(n)
	return &replayedConn{Conn: c, r: io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)}
}

type replayedConn struct {
	net.Conn
	r io.Reader
}

func (c *replayedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the connection, as net/http does before closing
// one it answered with an error, so that the client reads the answer
// rather than a reset.
func (c *replayedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// listen runs the fast path on the connections of ln and returns the
// listener net/http serves: the connections the engine hands off.
func (e *h1Engine) listen(ln net.Listener) net.Listener {
	hl := &handoffListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	handoff := func(c net.Conn) {
		select {
		case hl.conns <- c:
		case <-hl.done:
			c.Close()
		}
	}
	go func() {
		for {
			c, err := acceptRetrying(ln, hl.done)
			if err != nil {
				hl.fail(err)
				return
			}
			go e.serve(&h1ClientConn{Conn: c, handoff: handoff})
		}
	}()
	return hl
}

// track counts a new connection; false when the engine is shutting down.
func (e *h1Engine) track(c *h1ClientConn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing.Load() {
		return false
	}
	if e.conns == nil {
		e.conns = make(map[*h1ClientConn]struct{})
	}
	e.conns[c] = struct{}{}
	e.metrics.ConnOpened()
	return true
}

// untrack forgets a connection that was closed or handed to net/http
// (which counts it from then on); once, however often it is called.
func (e *h1Engine) untrack(c *h1ClientConn) {
	e.mu.Lock()
	_, ok := e.conns[c]
	delete(e.conns, c)
	e.mu.Unlock()
	if ok {
		e.metrics.ConnClosed()
	}
}

// shutdown closes the idle connections and makes the busy ones close after
// their current exchange, then waits until none is left or ctx is done,
// when it closes the rest.
func (e *h1Engine) shutdown(ctx context.Context) error {
	e.closing.Store(true)
	interval := time.Millisecond
	for {
		e.mu.Lock()
		n := len(e.conns)
		for c := range e.conns {
			if c.idle.Load() {
				c.Close()
			}
		}
		e.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			e.closeAll()
			return ctx.Err()
		case <-time.After(interval):
		}
		interval = min(2*interval, 100*time.Millisecond)
	}
}

func (e *h1Engine) closeAll() {
	e.closing.Store(true)
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		c.Close()
	}
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
