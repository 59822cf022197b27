package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/route"
)

// Defaults of Options.
const (
	// DefaultDialTimeout bounds connecting to an endpoint.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for an endpoint's
	// response headers once the request is sent.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultMaxIdleConnsPerHost is how many idle keep-alive connections
	// are kept per endpoint.
	DefaultMaxIdleConnsPerHost = 256
)

// Options configure a Handler. Zero values mean the documented defaults.
type Options struct {
	// Logger receives the handler's logs; the caller names it (cmd/postern
	// passes logger.Named("proxy")). Nil means no logs.
	Logger *zap.Logger
	// DialTimeout bounds connecting to an endpoint; a timeout answers 504.
	// Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written; a timeout answers 504. It does not limit how
	// long a response body (a stream) may take. Zero means
	// DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle keep-alive connections to keep
	// per endpoint. Zero means DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// Transport sends requests to endpoints. Nil means the Handler's own
	// *http.Transport, tuned for a proxy from the fields above; tests and
	// benchmarks set it.
	Transport http.RoundTripper
	// Metrics records every request in Prometheus metrics. Nil means none.
	Metrics *Metrics
	// AccessLog gets a line per request. Nil means no access log.
	AccessLog *AccessLog
}

// Handler is the reverse proxy: it serves each request from the routing
// table swapped in last, by the endpoint a balancer picks.
type Handler struct {
	table     atomic.Pointer[route.Table]
	balancers *balancer.Registry
	inflight  *balancer.InFlight
	proxy     *httputil.ReverseProxy
	transport *transports // nil when Options.Transport was given
	log       *zap.Logger
	swapMu    sync.Mutex // serialises Swap, never taken by requests
	metrics   *Metrics   // nil: none
	accessLog *AccessLog // nil: none
	observing bool       // metrics or accessLog is set
}

// New returns a Handler serving an empty table (every request 404) until
// the first Swap.
func New(opts Options) *Handler {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	inflight := new(balancer.InFlight)
	h := &Handler{
		balancers: balancer.NewRegistry(inflight),
		inflight:  inflight,
		log:       log,
		metrics:   opts.Metrics,
		accessLog: opts.AccessLog,
		observing: opts.Metrics != nil || opts.AccessLog != nil,
	}
	rt := opts.Transport
	if rt == nil {
		h.transport = newTransports(opts)
		rt = h.transport
	}
	if h.observing {
		rt = timedTransport{next: rt}
	}
	// One ReverseProxy for every request: what differs per request (the
	// endpoint) travels in the request's context.
	h.proxy = &httputil.ReverseProxy{
		Rewrite:      h.rewrite,
		Transport:    rt,
		ErrorHandler: h.proxyError,
		ErrorLog:     newStdLog(log),
		BufferPool:   bufferPool{},
		// FlushInterval 0: ReverseProxy already flushes every write of a
		// response without a Content-Length (chunked, or read to EOF) and
		// of text/event-stream, which is what streams; responses of known
		// length are written in 4 KiB blocks without a timer per request.
	}
	h.table.Store(route.Empty())
	return h
}

// Swap makes t the table new requests are served from (nil means an empty
// table). Requests already running finish on the table they started with;
// none is blocked or dropped. Balancer state and in-flight counts carry
// over by backend key and endpoint address; what t no longer uses is
// forgotten.
func (h *Handler) Swap(t *route.Table) {
	if t == nil {
		t = route.Empty()
	}
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	if err := h.balancers.Sync(t); err != nil {
		h.log.Warn("unknown balancer policy, using round-robin", zap.Error(err))
	}
	h.metrics.sync(t)
	h.table.Store(t)
}

// Table returns the table requests are served from.
func (h *Handler) Table() *route.Table { return h.table.Load() }

// CloseIdleConnections closes the idle keep-alive connections to endpoints.
func (h *Handler) CloseIdleConnections() {
	if h.transport != nil {
		h.transport.CloseIdleConnections()
	}
}

// ServeHTTP proxies r to an endpoint of the backend its route names.
//
// The flow: load the table once (the request sees one table from start to
// end), look up host and path, pick an endpoint with the backend's balancer,
// count the request in flight to it, and hand over to the ReverseProxy,
// whose Rewrite aims the outgoing request at that endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The observation records the status and sizes and carries the request
	// ID; an outer Observe may have started it already.
	ob, observed := w.(*observation)
	if !observed {
		ob = h.begin(w, r)
		defer h.end(ob)
		w = ob
	}
	switch {
	case r.RequestURI == "*":
		// The asterisk-form asks about the proxy itself (RFC 9112 §3.2.4,
		// RFC 9110 §9.3.7); no backend is meant.
		if r.Method != http.MethodOptions {
			h.fail(w, r, http.StatusBadRequest, "asterisk-form request-target", nil, nil)
			return
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	case r.Method == http.MethodConnect:
		// A tunnel through an ingress to wherever the client names would
		// make every backend an open proxy.
		h.fail(w, r, http.StatusMethodNotAllowed, "CONNECT", nil, nil)
		return
	}

	rt := h.table.Load().Lookup(r.Host, r.URL.Path)
	if rt == nil {
		h.fail(w, r, http.StatusNotFound, "no route", nil, nil)
		return
	}
	ob.route = rt
	be := rt.Backend
	ep := h.balancers.Get(be).Pick(be.Endpoints, r)
	if ep == nil {
		// No endpoints: none ready, or the backend is Unavailable.
		h.fail(w, r, http.StatusServiceUnavailable, "no endpoint", be, nil)
		return
	}
	c := h.inflight.Acquire(ep.Address)
	defer c.Release()

	st := &ob.st
	st.Context, st.backend, st.endpoint, st.requestID = r.Context(), be, ep, ob.id[:]
	out := r.WithContext(st)
	if r.Body != nil && r.Body != http.NoBody {
		st.body = reqBody{ReadCloser: r.Body, st: st}
		out.Body = &st.body
	}
	h.proxy.ServeHTTP(w, out)
}

// reqState is what one request carries from ServeHTTP to Rewrite and the
// ErrorHandler. It is its own context (the request's, plus itself as a
// value) so that passing it costs one allocation.
type reqState struct {
	context.Context
	backend  *route.Backend
	endpoint *route.Endpoint
	body     reqBody
	bodyErr  atomic.Pointer[error] // the first error reading the client's body

	requestID []string      // the X-Request-Id value sent to the endpoint
	bodyBytes atomic.Int64  // bytes of the client's body read (the Transport reads it)
	upstream  time.Duration // how long the attempt to the endpoint took
	attempted bool          // upstream is set: the endpoint was tried
}

type stateKey struct{}

// Value returns the state itself for stateKey and defers to the request's
// context otherwise.
func (s *reqState) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return s
	}
	return s.Context.Value(key)
}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// reqBody records an error reading the client's request body, so that the
// ErrorHandler can blame the client (400, 499) rather than the backend.
// The Transport reads it from its own goroutine.
type reqBody struct {
	io.ReadCloser
	st *reqState
}

func (b *reqBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.st.bodyBytes.Add(int64(n))
	if err != nil && err != io.EOF {
		e := err // a copy, so that only a failing Read allocates
		b.st.bodyErr.CompareAndSwap(nil, &e)
	}
	return n, err
}
