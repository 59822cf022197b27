package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/internal/sysio"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
)

// Defaults of ServerOptions.
const (
	// DefaultReadHeaderTimeout bounds reading a request's header section
	// (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request. It is longer than the 60 s idle timeout of the
	// common cloud load balancers in front, so that they, not Postern,
	// close idle connections and never send on one Postern just closed.
	DefaultIdleTimeout = 75 * time.Second
	// DefaultMaxHeaderBytes bounds a request's header section; over it Go
	// answers 431 (RFC 6585 §5).
	DefaultMaxHeaderBytes = 64 << 10
)

// ServerOptions configure a Server. Zero values mean the documented
// defaults.
type ServerOptions struct {
	// Logger receives net/http's error log at debug level and the framing
	// guard's rejections. Nil means no logs.
	Logger *zap.Logger
	// ReadHeaderTimeout bounds reading a request's header section. Zero
	// means DefaultReadHeaderTimeout. Bodies have no read timeout: uploads
	// may be long.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and header fields. Zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// Metrics counts the open client connections
	// (postern_proxy_open_connections) and the fast path's hand-offs.
	// Nil means no metrics.
	Metrics *observe.Metrics
	// TrustedProxies are the peers whose forwarding headers
	// (X-Forwarded-*, X-Real-IP, Forwarded) are passed on and whose
	// X-Forwarded-For names the client in the access log. Nil means no
	// one: a client's own forwarding headers are replaced or removed.
	TrustedProxies *pipeline.TrustedProxies
	// ProxyProtocol requires every connection to start with a PROXY
	// protocol header (v1 or v2, before TLS on ServeTLS), read within
	// ReadHeaderTimeout; its source address becomes the request's
	// RemoteAddr, and so the peer TrustedProxies judges. A connection
	// without a valid header is closed unanswered. False means no header
	// is expected (one sent is a malformed request).
	ProxyProtocol bool
	// ProxyProtocolFrom, when not empty, narrows ProxyProtocol to the
	// connections from these addresses (the load balancers): only they
	// must, and may, send the header. A connection from anywhere else is
	// served as it is, its TCP peer the client, so it can neither name
	// another client address nor is it refused (in-cluster clients that
	// reach the Service directly).
	ProxyProtocolFrom *pipeline.TrustedProxies
	// NoFastPath turns the HTTP/1.1 fast path (h1Engine) off: every
	// request is read by net/http. The default, false, serves HTTP/1.1
	// connections with the fast path, which hands net/http what it cannot
	// carry; both decide through the same pipeline. A Handler made with
	// Options.Transport has no fast path.
	NoFastPath bool
	// ACME answers the ACME http-01 challenges of the hosts whose
	// certificates come from ACME, on a plain listener (Serve): the tls
	// package's issuer's handler. Nil means none.
	ACME http.Handler
	// HTTPSPort is the port clients reach HTTPS on (the Service's, usually
	// 443, not the container's), for the Location of the redirect to
	// HTTPS a plain listener answers; 0 and 443 are left out of it.
	HTTPSPort int
	// Table, when not empty, is the address of the listener of the
	// table whose table this server serves (route.Table.Listener): a
	// Gateway with an address of its own. Port is then that listener's
	// port, for the Gateway API's redirects.
	Table string
	Port  int
}

// Server serves a Handler on a listener, plain (Serve) or TLS
// (ServeTLS): the HTTP/1.1 fast path reads the connections first and
// hands net/http what it cannot carry; both decide every request through
// the Handler's pipeline, with the policies of the listener (redirect to
// HTTPS and ACME challenges on plain, 421 and HSTS on TLS). net/http has
// the framing guard in front of it: every connection is read through a
// parser that tells the guard which requests had ambiguous framing (a
// request-smuggling attempt), and those get 400 and a closed connection
// without reaching the pipeline.
//
// Responses have no write timeout (streams may last) and bodies no read
// timeout (uploads may be long).
//
// Serve expects a plain TCP listener: the parser must read the bytes of
// HTTP/1.1 itself. ServeTLS terminates TLS first and runs HTTP/1.1
// connections through the same parser; HTTP/2 has framing of its own.
type Server struct {
	srv        *http.Server
	h          *Handler
	opts       ServerOptions
	log        *zap.Logger
	metrics    *observe.Metrics // nil: none
	proxyProto bool             // connections start with a PROXY protocol header
	// proxyFrom narrows proxyProto to these peers; empty: every peer.
	proxyFrom  *pipeline.TrustedProxies
	readHeader time.Duration
	fast       *h1Engine // nil: no fast path

	mu       sync.Mutex
	hijacked map[*conn]struct{} // connections handed over to a handler (WebSockets)
}

// NewServer returns a Server for h.
func NewServer(h *Handler, opts ServerOptions) *Server {
	s := &Server{h: h, opts: opts, log: opts.Logger, metrics: opts.Metrics, proxyProto: opts.ProxyProtocol, proxyFrom: opts.ProxyProtocolFrom, hijacked: make(map[*conn]struct{})}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	readHeader := opts.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = DefaultReadHeaderTimeout
	}
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	s.readHeader = readHeader
	if !opts.NoFastPath && !h.custom {
		s.fast = &h1Engine{
			cluster:           h.cluster,
			mirror:            h.mirror,
			sink:              h.sink,
			metrics:           opts.Metrics,
			readHeaderTimeout: readHeader,
			idleTimeout:       idle,
			maxHeaderBytes:    maxHeader,
		}
	}
	s.srv = &http.Server{
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       0,
		WriteTimeout:      0,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          newStdLog(s.log),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if fc, ok := c.(framedConn); ok {
				return context.WithValue(ctx, connKey{}, fc.framed())
			}
			return ctx
		},
		ConnState: s.connState,
		// Every request must reach the guard, which takes one verdict per
		// request; Go's own "OPTIONS *" handler would skip it.
		DisableGeneralOptionsHandler: true,
	}
	return s
}

// Serve accepts connections on ln until Shutdown or Close, and closes ln.
// It returns nil after Shutdown or Close, otherwise the accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.listen(pipeline.ListenerOptions{
		Trusted:    s.opts.TrustedProxies,
		Challenges: acmeChallenges(s.opts.ACME),
		HTTPSPort:  s.opts.HTTPSPort,
		Table:      s.opts.Table,
		Port:       s.opts.Port,
	})
	var inner net.Listener = sysio.Listener{Listener: ln}
	if s.proxyProto {
		inner = &proxyListener{Listener: ln, timeout: s.readHeader, log: s.log, from: s.proxyFrom}
	}
	if s.fast != nil {
		inner = s.fast.listen(inner)
	}
	// HTTP/2 without TLS, with prior knowledge (h2c: gRPC clients, and
	// the Gateway API's GRPCRoutes on HTTP listeners): a connection that
	// opens with the HTTP/2 preface goes to net/http's HTTP/2 server; no
	// HTTP/1.1 request can start that way. The Upgrade: h2c dance is not
	// offered.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv.Protocols = &protos
	s.srv.HTTP2 = http2Config(defaultMaxStreams)
	err := s.srv.Serve(&listener{Listener: inner, onClose: s.untrack})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve %s: %w", ln.Addr(), err)
}

// listen sets up the decision of the listener's requests, with opts, for
// net/http and the fast path alike.
func (s *Server) listen(opts pipeline.ListenerOptions) *pipeline.Listener {
	l := s.h.pipeline.Listener(opts)
	s.srv.Handler = guard{next: netHTTP{h: s.h, l: l}, log: s.logRejected}
	if s.fast != nil {
		s.fast.l = l
	}
	return l
}

// ListenAndServe listens on the TCP address addr and serves it like Serve.
func (s *Server) ListenAndServe(addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return s.Serve(ln)
}

// Shutdown stops the server gracefully: it closes the listeners at once
// (new connections are refused), closes idle connections, and waits for
// the requests in flight to finish, and for hijacked connections (WebSocket
// tunnels, which net/http stops tracking) to close, until ctx is done. Then
// it closes whatever is left and returns ctx's error (wrapped).
func (s *Server) Shutdown(ctx context.Context) error {
	// Before any listener closes: a response net/http writes from now on
	// says Connection: close, even while the engine's listener is already
	// closed and net/http's Shutdown has not begun.
	s.srv.SetKeepAlivesEnabled(false)
	var fastErr error
	fastDone := make(chan struct{})
	go func() {
		defer close(fastDone)
		if s.fast != nil {
			fastErr = s.fast.shutdown(ctx)
		}
	}()
	err := s.srv.Shutdown(ctx)
	if err == nil {
		err = s.waitHijacked(ctx)
	}
	<-fastDone
	if err == nil {
		err = fastErr
	}
	if err != nil {
		_ = s.srv.Close()
		s.closeHijacked()
		if s.fast != nil {
			s.fast.closeAll()
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close closes the listeners and every connection at once, hijacked ones
// included.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.closeHijacked()
	if s.fast != nil {
		s.fast.closeAll()
	}
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

func (s *Server) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.metrics.ConnOpened()
	case http.StateClosed:
		s.metrics.ConnClosed()
	}
	fc, ok := c.(framedConn)
	if !ok || state != http.StateHijacked {
		return
	}
	pc := fc.framed()
	pc.hijacked.Store(true)
	s.mu.Lock()
	s.hijacked[pc] = struct{}{}
	s.mu.Unlock()
}

// untrack forgets a closed connection.
func (s *Server) untrack(c *conn) {
	if !c.hijacked.Load() {
		return
	}
	s.metrics.ConnClosed() // net/http reports no StateClosed for hijacked connections
	s.mu.Lock()
	delete(s.hijacked, c)
	s.mu.Unlock()
}

func (s *Server) hijackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hijacked)
}

// waitHijacked waits until every hijacked connection is closed or ctx is
// done, polling like http.Server.Shutdown does.
func (s *Server) waitHijacked(ctx context.Context) error {
	interval := time.Millisecond
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for s.hijackedCount() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		interval = min(2*interval, 500*time.Millisecond)
		timer.Reset(interval)
	}
	return nil
}

func (s *Server) closeHijacked() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.hijacked))
	for c := range s.hijacked {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// logRejected logs a request the framing guard refused.
func (s *Server) logRejected(r *http.Request, reason string) {
	if ce := s.log.Check(zap.DebugLevel, reason); ce != nil {
		ce.Write(zap.Int("status", http.StatusBadRequest), zap.String("method", r.Method),
			zap.String("host", r.Host), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
	}
}
