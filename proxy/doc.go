// Package proxy serves traffic: the listeners, the request handler and the
// reverse proxy in front of the backends. The controller builds routing
// tables; the proxy only ever reads them.
//
// Where it sits in the flow:
//
//	controller --Swap--> Handler: atomic.Pointer[route.Table]
//	request -> Server (framing guard) -> Handler -> table.Load() -> host -> route
//	        -> balancer -> endpoint -> ReverseProxy -> backend
//
// Server (server.go) owns the listener side: net/http's server with the
// timeouts and limits of an edge proxy, graceful shutdown that also ends
// hijacked (WebSocket) connections, and the framing guard (conn.go, on
// the parser in internal/h1). Go's server hides request-smuggling evidence from handlers
// (it drops a Content-Length sent with chunked Transfer-Encoding), so every
// connection is read through a parser that follows HTTP/1.1 framing and
// judges each request; a request with ambiguous framing gets 400 and a
// closed connection and never reaches a backend. The guard also refuses an
// absolute-form request whose authority is not its Host field, and fails a
// chunked body whose chunk extensions are out of grammar as it is read.
//
// Client addresses: with ServerOptions.ProxyProtocol, every connection
// starts with a PROXY protocol header (proxyproto.go), read on the
// connection's own goroutine, whose source address becomes RemoteAddr.
// The forwarding headers a client sends are passed on only when that
// peer is in ServerOptions.TrustedProxies (trust.go); forwarded.go sets
// them on the outgoing request, and the access log names the real client
// found behind a trusted peer.
//
// Handler (handler.go) serves each request from the table it loads once:
// Lookup picks the route (no route: 404); the backend's Balancer, held by
// a balancer.Registry across table swaps, picks the endpoint in
// Handler.ServeHTTP (no endpoint: 503); the request is counted in flight
// to that endpoint and handed to one shared httputil.ReverseProxy whose
// Rewrite aims it at the endpoint. Failures to reach the endpoint are told
// apart in errors.go: 502 (refused, reset), 504 (timeouts), 400 (the
// client's body was malformed), 413 (past the backend's MaxBodySize), and
// 499, logged only, when the client went away.
//
// Resilience (retry.go, balancer/health.go): the ReverseProxy's Transport
// is retryTransport, which records each attempt's outcome in the passive
// health tracker and, when an attempt could not reach its endpoint before
// any response byte and sending again is safe (an idempotent method or an
// Idempotency-Key, or a body not yet read; bodies are never buffered),
// sends the request to another endpoint of the backend, up to its
// Retries, invisibly to the client. Consecutive failures eject an endpoint
// for a back-off period that doubles while it keeps failing; picks skip
// ejected endpoints unless all of a backend's are (fail open). Per-backend
// connect and read timeouts select the transport, the idle timeout wraps
// the response body. Connection pools are per endpoint (transport.go), so
// that a table swap closes the idle connections of the endpoints it
// removed, and the busy ones as their requests end.
//
// TLS (https.go): Server.ServeTLS terminates TLS with the tls.Config the
// tls package's Store gives (the certificate is chosen there, by SNI), runs
// the handshakes off the accept loop, hands h2 connections to net/http's
// HTTP/2 server and HTTP/1.1 ones to the framing guard. tlsroute.go wraps
// the handler per listener: PlainHTTP answers ACME http-01 challenges and
// redirects spec.tls hosts to HTTPS (308); SecureHTTP refuses a Host the
// connection's certificate does not cover (421) and adds HSTS. How the
// proxy speaks to a backend (HTTP, HTTPS, h2c, gRPC) is chosen per backend
// in transport.go.
//
// Observability: metrics.go (Prometheus, one Observe wrapper per listener),
// accesslog.go (one JSON line per request, written by a goroutine off the
// request path, lossy when the sink falls behind), requestid.go
// (X-Request-ID kept when valid, generated otherwise).
//
// NewAdminHandler (admin.go) serves the --metrics-addr port: health,
// readiness, the live table (/debug/routes), metrics and, with
// --enable-pprof, /debug/pprof.
package proxy
