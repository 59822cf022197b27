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
	// (postern_proxy_open_connections). Nil means no metrics.
	Metrics *Metrics
	// TrustedProxies are the peers whose forwarding headers
	// (X-Forwarded-*, X-Real-IP, Forwarded) are passed on and whose
	// X-Forwarded-For names the client in the access log. Nil means no
	// one: a client's own forwarding headers are replaced or removed.
	TrustedProxies *TrustedProxies
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
	ProxyProtocolFrom *TrustedProxies
	// FastPath, when not nil, serves the HTTP/1.1 requests h1Engine
	// takes with that Handler (its table, balancers, health, connection
	// pools, metrics and access log) without net/http, at a fraction of
	// the CPU; everything else still goes to the Server's handler. It must
	// be the Handler that handler ends in: through PlainHTTP for Serve,
	// through SecureHTTP for ServeTLS (which also needs TLSOptions.Covers;
	// HTTP/2 always goes to net/http). Ignored for a Handler made with
	// Options.Transport. Nil means every request goes through net/http.
	FastPath *Handler
}

// Server serves a handler on plain-HTTP listeners, with the framing guard
// in front of it: every connection is read through a parser that tells
// the guard which requests had ambiguous framing (a request-smuggling
// attempt), and those get 400 and a closed connection without reaching the
// handler.
//
// Responses have no write timeout (streams may last) and bodies no read
// timeout (uploads may be long).
//
// Serve expects a plain TCP listener: the parser must read the bytes of
// HTTP/1.1 itself. ServeTLS terminates TLS first and runs HTTP/1.1
// connections through the same parser; HTTP/2 has framing of its own.
type Server struct {
	srv        *http.Server
	log        *zap.Logger
	metrics    *Metrics // nil: none
	proxyProto bool     // connections start with a PROXY protocol header
	// proxyFrom narrows proxyProto to these peers; empty: every peer.
	proxyFrom  *TrustedProxies
	readHeader time.Duration
	fast       *h1Engine // nil: no fast path

	mu       sync.Mutex
	hijacked map[*conn]struct{} // connections handed over to a handler (WebSockets)
}

// NewServer returns a Server for h.
func NewServer(h http.Handler, opts ServerOptions) *Server {
	s := &Server{log: opts.Logger, metrics: opts.Metrics, proxyProto: opts.ProxyProtocol, proxyFrom: opts.ProxyProtocolFrom, hijacked: make(map[*conn]struct{})}
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
	if opts.FastPath != nil && opts.FastPath.transport != nil {
		s.fast = &h1Engine{
			h:                 opts.FastPath,
			trusted:           opts.TrustedProxies,
			log:               opts.FastPath.log, // the Handler's: request logs are its
			metrics:           opts.Metrics,
			readHeaderTimeout: readHeader,
			idleTimeout:       idle,
			maxHeaderBytes:    maxHeader,
		}
	}
	s.srv = &http.Server{
		Handler:           guard{next: h, log: s.logRejected},
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
	if t := opts.TrustedProxies; !t.empty() {
		// Once per listener: the handler finds the trusted networks in
		// every request's context (trustedPeer).
		s.srv.BaseContext = func(net.Listener) context.Context {
			return context.WithValue(context.Background(), trustKey{}, t)
		}
	}
	return s
}

// Serve accepts connections on ln until Shutdown or Close, and closes ln.
// It returns nil after Shutdown or Close, otherwise the accept error.
func (s *Server) Serve(ln net.Listener) error {
	var inner net.Listener = sysListener{ln}
	if s.proxyProto {
		inner = &proxyListener{Listener: ln, timeout: s.readHeader, log: s.log, from: s.proxyFrom}
	}
	if s.fast != nil {
		inner = s.fast.listen(inner)
	}
	err := s.srv.Serve(&listener{Listener: inner, onClose: s.untrack})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve %s: %w", ln.Addr(), err)
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
	s.metrics.connState(state)
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
	s.metrics.hijackedClosed()
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
