// Package proxy serves traffic: the listeners, the engines that read
// requests off them, and the public Handler the rest of Postern wires up.
// The controller builds routing tables; the proxy only ever reads them.
//
// Where it sits in the flow:
//
//	controller --Swap--> Handler -> pipeline.Pipeline: atomic table
//	request -> Server (listener: sysio, PROXY protocol, TLS)
//	        -> engine: the HTTP/1.1 fast path (h1engine.go) | net/http (nethttp.go, HTTP/1.1 and HTTP/2)
//	        -> pipeline.Listener.Decide (proxy/pipeline): one decision, whatever the engine
//	        -> local answer | forward through upstream.Cluster (proxy/upstream) -> endpoint
//	        -> observe.Record -> metrics, access log (proxy/observe)
//
// The packages under it, each with one job:
//   - proxy/internal/h1: the HTTP/1.1 wire code (head parsers, chunked
//     codec, the framing guard's shadow parser), standard library only;
//   - proxy/internal/sysio: raw system calls for client and endpoint
//     connections;
//   - proxy/pipeline: what happens to a request (listener policies, route
//     lookup, route policies, backend and endpoint pick), as a decision an
//     engine carries out; a policy is written once and holds on every
//     engine;
//   - proxy/upstream: endpoints, balancers, passive health, connection
//     pools, the retry decision and the status of a failed forward;
//   - proxy/observe: the Record of a request, Prometheus metrics and the
//     access log;
//   - proxy/route: the routing table (no Kubernetes, no I/O);
//   - proxy/balancer: the balancing policies and their state.
//
// Server (server.go, https.go) owns the listener side: net/http's server
// with the timeouts and limits of an edge proxy, graceful shutdown that
// also ends hijacked (WebSocket) connections, TLS handshakes off the
// accept loop (the certificate is chosen by the tls package's Store, by
// SNI), and the framing guard (conn.go). Go's server hides
// request-smuggling evidence from handlers (it drops a Content-Length sent
// with chunked Transfer-Encoding), so every connection net/http reads goes
// through a parser that follows HTTP/1.1 framing and judges each request;
// a request with ambiguous framing gets 400 and a closed connection and is
// never decided.
//
// The engines carry out decisions; none makes one. The fast path
// (h1engine.go, h1forward.go, h1write.go) reads HTTP/1.1 itself, on the
// connection's goroutine, and writes a decision's local answer or sends
// the request on its own keep-alive connections from the cluster's pools:
// a fraction of net/http's CPU per request. What it cannot carry (an
// upgrade, Expect, a head its strict parser refuses or larger than its
// buffer, a backend that is not plain HTTP/1.1) it hands, with the rest of
// the connection, to net/http, counted in
// postern_proxy_fastpath_handoffs_total{reason}. The net/http adapter
// (nethttp*.go) serves those, and HTTP/2: it decides through the same
// Listener, writes a local answer through the ResponseWriter, or forwards
// through one shared httputil.ReverseProxy whose Rewrite applies the
// decision's request edits and whose Transport makes the attempts through
// the cluster (retryTransport).
//
// Client addresses: with ServerOptions.ProxyProtocol, connections start
// with a PROXY protocol header (proxyproto.go), whose source address is
// the peer. The forwarding fields a client sends are passed on only when
// that peer is in ServerOptions.TrustedProxies (the pipeline's forwarding
// policy); the access log names the real client found behind a trusted
// peer.
//
// NewAdminHandler (admin.go) serves the --metrics-addr port: health,
// readiness, the live table (/debug/routes), metrics and, with
// --enable-pprof, /debug/pprof.
package proxy
