package proxy

import (
	"context"
	"errors"
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
	// Health is the passive health tracker: it ejects endpoints that keep
	// failing. Nil means one of the Handler's own with the defaults
	// (balancer.DefaultFailureThreshold and so on); tests set one with a
	// short ejection and a clock of their own.
	Health *balancer.Health
}

// Handler is the reverse proxy: it serves each request from the routing
// table swapped in last, by the endpoint a balancer picks.
type Handler struct {
	table     atomic.Pointer[route.Table]
	balancers *balancer.Registry
	inflight  *balancer.InFlight
	health    *balancer.Health
	proxy     *httputil.ReverseProxy
	transport *transports // nil when Options.Transport was given
	log       *zap.Logger
	swapMu    sync.Mutex // serialises Swap, never taken by requests
	// addrRefs counts, per endpoint address of the table served, the
	// backends listing it; Swap keeps it so that an endpoint change is
	// carried over in time proportional to the change. Under swapMu.
	addrRefs  map[string]int32
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
	inflight, health := new(balancer.InFlight), opts.Health
	if health == nil {
		health = new(balancer.Health)
	}
	h := &Handler{
		balancers: balancer.NewRegistry(inflight, health),
		inflight:  inflight,
		health:    health,
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
	rt = &retryTransport{h: h, next: rt}
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
// none is blocked or dropped. Balancer state, in-flight counts, passive
// health and connection pools carry over by backend key and endpoint
// address; what t no longer uses is forgotten, and the idle connections to
// endpoints t no longer has are closed (the busy ones when their requests
// end). A table WithBackends made from the one served (an endpoint change)
// is carried over for the changed backends only: at 50,000 endpoints that
// takes about 1.5 ms instead of 50-100.
func (h *Handler) Swap(t *route.Table) {
	if t == nil {
		t = route.Empty()
	}
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	if p := t.Patch(); p != nil {
		if cur := h.table.Load(); cur != nil && cur.ID() == p.Base && h.swapPatch(p) {
			h.table.Store(t)
			return
		}
	}
	if err := h.balancers.Sync(t); err != nil {
		h.log.Warn("unknown balancer policy, using round-robin", zap.Error(err))
	}
	h.metrics.sync(t)
	h.addrRefs = make(map[string]int32)
	var addrs []string
	for _, b := range t.Backends() {
		for _, ep := range b.Endpoints {
			if h.addrRefs[ep.Address] == 0 {
				addrs = append(addrs, ep.Address)
			}
			h.addrRefs[ep.Address]++
		}
	}
	if h.transport != nil {
		h.transport.retain(addrs)
	}
	h.table.Store(t)
}

// swapPatch carries the proxy's state over to a table that p says differs
// from the one served only in the endpoints of some backends (an endpoint
// change, controller.PatchEndpoints): it touches those backends, the
// addresses that come and go with them, and the routes pointing at them,
// not every endpoint of the table. It reports false when it cannot (a
// patch that changes more); Swap then does the full pass, which also
// rebuilds addrRefs.
func (h *Handler) swapPatch(p *route.Patch) bool {
	if h.addrRefs == nil {
		return false
	}
	gone := make(map[string]bool)
	for ob := range p.Backends {
		for _, ep := range ob.Endpoints {
			if h.addrRefs[ep.Address]--; h.addrRefs[ep.Address] <= 0 {
				delete(h.addrRefs, ep.Address)
				gone[ep.Address] = true
			}
		}
	}
	var added, removed []string
	for _, nb := range p.Backends {
		for _, ep := range nb.Endpoints {
			if h.addrRefs[ep.Address] == 0 {
				if gone[ep.Address] {
					delete(gone, ep.Address) // left one backend, still in another
				} else {
					added = append(added, ep.Address)
				}
			}
			h.addrRefs[ep.Address]++
		}
	}
	for a := range gone {
		removed = append(removed, a)
	}
	if !h.balancers.SyncPatch(p, added, removed) || !h.metrics.patch(p) {
		return false
	}
	if h.transport != nil {
		h.transport.update(added, removed)
	}
	return true
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
// end), look up host and path, refuse a body the backend does not take,
// pick an endpoint with the backend's balancer (skipping ejected ones),
// count the request in flight to it, and hand over to the ReverseProxy,
// whose Rewrite aims the outgoing request at that endpoint and whose
// Transport (retryTransport) may move it to another one.
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
	case r.ProtoMajor >= 2 && !hostMatchesAuthority(r):
		// RFC 9113 §8.3.1: a Host field that names another authority
		// than :authority makes the request malformed. Routing, the
		// access log and any rule keyed on the host must not disagree
		// on which host a request is for.
		h.fail(w, r, http.StatusBadRequest, "Host differs from :authority", nil, nil)
		return
	}

	rt := h.table.Load().Lookup(r.Host, r.URL.Path)
	if rt == nil {
		h.fail(w, r, http.StatusNotFound, "no route", nil, nil)
		return
	}
	ob.route = rt
	be := rt.Backend
	if be.MaxBodySize > 0 && r.ContentLength > be.MaxBodySize {
		// RFC 9110 §15.5.14. The body is not read: the connection ends.
		w.Header().Set("Connection", "close")
		h.fail(w, r, http.StatusRequestEntityTooLarge, "request body too large", be, nil)
		return
	}
	ep := h.balancers.Pick(be, r)
	if ep == nil {
		// No endpoints: none ready, or the backend is Unavailable.
		h.fail(w, r, http.StatusServiceUnavailable, "no endpoint", be, nil)
		return
	}

	st := &ob.st
	st.Context, st.backend, st.endpoint, st.requestID = r.Context(), be, ep, ob.id[:]
	st.counter = h.inflight.Acquire(ep.Address)
	defer st.done()
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
	endpoint *route.Endpoint       // of the current attempt
	counter  *balancer.Counter     // in-flight count of endpoint
	pools    *endpointPools        // whose connection the response came on; nil: none yet
	body     reqBody               // the client's body, as the first attempt reads it
	bodyErr  atomic.Pointer[error] // the first error reading the client's body

	// bodyOwner says which attempt may read the client's body, and
	// whether it has: attempt<<1, plus 1 once a read started. A retry
	// takes the body over only from an attempt that never read it.
	bodyOwner atomic.Int32
	attempt   int32    // the current attempt, from 0
	tried     []string // addresses attempted before the current one

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

// done ends the request's use of its endpoint.
func (s *reqState) done() {
	s.counter.Release()
	if s.pools != nil {
		s.pools.release()
	}
}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// reqBody is the client's request body as one attempt reads it. It records
// the first error reading it, so that the ErrorHandler can blame the
// client (400, 499) rather than the backend, counts the bytes, enforces
// the backend's MaxBodySize, and makes sure that only one attempt ever
// reads it. The Transport reads it from its own goroutine.
type reqBody struct {
	io.ReadCloser
	st      *reqState
	attempt int32
}

// errBodyTooLarge is the error reading a body past the backend's
// MaxBodySize; the client gets 413.
var errBodyTooLarge = errors.New("request body larger than the backend's limit")

// errBodyMoved is what an attempt that was given up reads from the body
// that a retry took over.
var errBodyMoved = errors.New("request body taken over by a retry")

func (b *reqBody) Read(p []byte) (int, error) {
	st := b.st
	if !st.claimBody(b.attempt) {
		return 0, errBodyMoved
	}
	limit := st.backend.MaxBodySize
	if limit > 0 {
		// Read at most one byte past the limit, to see whether there is
		// more.
		if left := limit - st.bodyBytes.Load(); int64(len(p)) > left+1 {
			p = p[:left+1]
		}
	}
	n, err := b.ReadCloser.Read(p)
	total := st.bodyBytes.Add(int64(n))
	if limit > 0 && total > limit {
		st.bodyBytes.Add(limit - total)
		n -= int(total - limit)
		err = errBodyTooLarge
	}
	if err != nil && err != io.EOF {
		e := err // a copy, so that only a failing Read allocates
		st.bodyErr.CompareAndSwap(nil, &e)
	}
	return n, err
}

// Close closes the client's body if this attempt read from it. A body
// no attempt read stays open for a retry; net/http closes it when the
// handler returns.
func (b *reqBody) Close() error {
	if b.st.bodyOwner.Load() == b.attempt<<1|1 {
		return b.ReadCloser.Close()
	}
	return nil
}

// claimBody reports whether attempt may read the body, marking it read.
func (s *reqState) claimBody(attempt int32) bool {
	mine := attempt << 1
	for {
		switch o := s.bodyOwner.Load(); o {
		case mine | 1:
			return true
		case mine:
			if s.bodyOwner.CompareAndSwap(o, mine|1) {
				return true
			}
		default:
			return false
		}
	}
}

// hostMatchesAuthority reports whether an HTTP/2 or HTTP/3 request's Host
// fields, if it has any, name the host of its :authority (which net/http
// puts in r.Host): one field, the same host once normalized as routing
// normalizes it.
func hostMatchesAuthority(r *http.Request) bool {
	hosts := r.Header.Values("Host")
	switch len(hosts) {
	case 0:
		return true
	case 1:
		return route.NormalizeHost(hosts[0]) == route.NormalizeHost(r.Host)
	}
	return false
}
