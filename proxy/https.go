package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/internal/sysio"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
)

// DefaultHandshakeTimeout bounds a client's TLS handshake.
const DefaultHandshakeTimeout = 10 * time.Second

// TLSOptions configure ServeTLS.
type TLSOptions struct {
	// Config is the server TLS configuration (certificates by SNI, ALPN
	// "h2" and "http/1.1"); required.
	Config *tls.Config
	// HandshakeTimeout bounds each handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ObserveHandshake, if set, is called after every handshake, with the
	// error when it failed (for metrics).
	ObserveHandshake func(tls.ConnectionState, error)
	// MaxConcurrentStreams bounds the HTTP/2 streams a client may open at
	// once on one connection. Zero means 250.
	MaxConcurrentStreams int
	// Passthrough turns ssl-passthrough on (--enable-ssl-passthrough):
	// the ClientHello of every connection is read first, and those for a
	// host with route.VirtualHost.Passthrough go unopened to its backend.
	Passthrough bool
	// Covers reports whether a request for host may be served on a
	// connection whose TLS server name is serverName (see
	// tls.Store.Covers); a request it refuses gets 421 Misdirected
	// Request (RFC 9110 §15.5.20), on every engine. Nil means any host.
	Covers func(serverName, host string) bool
}

// ServeTLS accepts connections on ln, a plain TCP listener, terminates TLS
// on them and serves HTTP/1.1 and HTTP/2 (chosen by ALPN) until Shutdown
// or Close. Handshakes (and, with ServerOptions.ProxyProtocol, reading the
// PROXY header before them) run on the connection's own goroutine, so a
// slow client never holds up others. HTTP/1.1 connections are read through
// the framing parser, like Serve's; HTTP/2 has unambiguous framing of its
// own and goes to net/http's HTTP/2 server.
//
// A Server serves either Serve or ServeTLS, not both.
func (s *Server) ServeTLS(ln net.Listener, opts TLSOptions) error {
	if opts.Config == nil {
		return errors.New("serve tls: no TLS configuration")
	}
	to := opts.HandshakeTimeout
	if to <= 0 {
		to = DefaultHandshakeTimeout
	}
	streams := opts.MaxConcurrentStreams
	if streams <= 0 {
		streams = defaultMaxStreams
	}
	// net/http sets up its HTTP/2 server for Serve when the config offers
	// "h2"; handshakes are ours, so the config is only read for that.
	s.srv.TLSConfig = opts.Config
	s.srv.HTTP2 = http2Config(streams)
	s.listen(pipeline.ListenerOptions{Secure: true, Trusted: s.opts.TrustedProxies, Covers: opts.Covers, Table: s.opts.Table, Port: s.opts.Port})
	tl := &tlsListener{
		Listener:  sysio.Listener{Listener: ln},
		config:    opts.Config,
		timeout:   to,
		observe:   opts.ObserveHandshake,
		onClose:   s.untrack,
		log:       s.log,
		ready:     make(chan net.Conn),
		proxy:     s.proxyProto,
		proxyFrom: s.proxyFrom,
		proxyTO:   s.readHeader,
		done:      make(chan struct{}),
	}
	tl.fast = s.fast
	tl.metrics = s.metrics
	if opts.Passthrough {
		tl.passthrough = s.passthroughTarget
	}
	err := s.srv.Serve(tl)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve tls %s: %w", ln.Addr(), err)
}

// ListenAndServeTLS listens on the TCP address addr and serves it like
// ServeTLS.
func (s *Server) ListenAndServeTLS(addr string, opts TLSOptions) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return s.ServeTLS(ln, opts)
}

// tlsListener hands net/http connections whose TLS handshake is done: a
// *tls.Conn for HTTP/2 (net/http recognises it and starts its HTTP/2
// server) and a *tlsConn, read through the framing parser, for HTTP/1.1.
type tlsListener struct {
	net.Listener
	config    *tls.Config
	timeout   time.Duration
	observe   func(tls.ConnectionState, error)
	onClose   func(*conn)
	log       *zap.Logger
	proxy     bool                     // a PROXY protocol header comes before the ClientHello
	proxyFrom *pipeline.TrustedProxies // narrows proxy to these peers (sendsProxyHeader)
	proxyTO   time.Duration            // bounds reading it
	fast      *h1Engine                // serves HTTP/1.1 connections first; nil: none
	metrics   *observe.Metrics         // nil: none
	// passthrough returns the endpoint of a server name whose
	// connections go unopened (ssl-passthrough); nil: none do.
	passthrough func(serverName string) (addr, backend string)

	ready     chan net.Conn // handshaken connections for Accept
	done      chan struct{} // closed by Close
	startOnce sync.Once     // starts acceptLoop on the first Accept
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error // the accept error that ended acceptLoop
}

func (l *tlsListener) acceptLoop() {
	for {
		c, err := acceptRetrying(l.Listener, l.done)
		if err != nil {
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		go l.handshake(c)
	}
}

// acceptRetrying returns the next connection of ln. An error that says to
// try again (out of file descriptors and the like: a net.Error whose
// Timeout is true) is waited out with a growing pause, as net/http does,
// until done is closed (net.ErrClosed); any other error is returned.
func acceptRetrying(ln net.Listener, done <-chan struct{}) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		select {
		case <-time.After(delay):
		case <-done:
			return nil, net.ErrClosed
		}
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	in := raw
	if l.proxy && sendsProxyHeader(raw, l.proxyFrom) {
		pc := newProxyConn(in, l.proxyTO, l.log)
		if pc.handshake() != nil { // logged by the proxyConn
			_ = raw.Close()
			return
		}
		in = pc
	}
	if l.passthrough != nil {
		name, hello, ok := peekServerName(in, l.timeout)
		if ok {
			if addr, backend := l.passthrough(name); addr != "" {
				l.splice(in, raw, hello, addr, backend, name)
				return
			} else if backend != "" {
				// A passthrough host without an endpoint: never
				// terminated here instead.
				l.metrics.Passthrough(false, 0, 0)
				_ = raw.Close()
				return
			}
		}
		in = &replayedConn{Conn: in, r: io.MultiReader(bytes.NewReader(hello), in)}
	}
	tc := tls.Server(in, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if l.observe != nil {
		l.observe(tc.ConnectionState(), err)
	}
	if err != nil {
		if ce := l.log.Check(zap.DebugLevel, "tls handshake failed"); ce != nil {
			ce.Write(zap.String("remote", in.RemoteAddr().String()), zap.Error(err))
		}
		_ = raw.Close()
		return
	}
	state := tc.ConnectionState()
	if state.NegotiatedProtocol == "h2" {
		l.hand(tc)
		return
	}
	if l.fast != nil {
		// HTTP/1.1: the fast path serves it on this goroutine, and hands
		// it (with what it read) to net/http when it meets a request it
		// does not take.
		l.fast.serve(&h1ClientConn{Conn: tc, secure: true, serverName: state.ServerName, peerCerts: state.PeerCertificates,
			handoff: func(rc net.Conn) { l.hand(&tlsConn{conn: newConn(rc, l.onClose), tc: tc}) }})
		return
	}
	l.hand(&tlsConn{conn: newConn(tc, l.onClose), tc: tc})
}

// hand gives net/http a connection whose handshake is done.
func (l *tlsListener) hand(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// Accept returns the next connection whose handshake is done. The accept
// loop starts with the first call: net/http finishes setting up its HTTP/2
// server (which may touch the TLS configuration) before it accepts.
func (l *tlsListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections still in their handshake are closed.
func (l *tlsListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// tlsConn is an HTTP/1.1 connection over TLS, read through the framing
// parser. ConnectionState lets net/http fill in Request.TLS.
type tlsConn struct {
	*conn
	tc *tls.Conn
}

// ConnectionState returns the TLS state of the connection.
func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// defaultMaxStreams bounds the concurrent HTTP/2 streams of a client
// connection unless TLSOptions.MaxConcurrentStreams says otherwise (and
// on the plain listener's h2c connections).
const defaultMaxStreams = 250

// http2Config is the settings of net/http's HTTP/2 server.
func http2Config(streams int) *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams: streams,
		// Larger windows than the 1 MiB default let one stream keep a
		// fast link busy; memory per connection stays bounded.
		MaxReceiveBufferPerConnection: 4 << 20,
		MaxReceiveBufferPerStream:     1 << 20,
	}
}
