package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-dev/postern/proxy/route"
)

// DurationBuckets are the classic histogram buckets of the proxy's
// latency histograms, in seconds: from a fast cache hit to a slow report,
// around the latencies SLOs are usually written for (100 ms, 250 ms, 1 s).
// The histograms are native histograms as well, for servers that scrape
// them.
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// SizeBuckets are the buckets of the body size histograms, in bytes:
// powers of 4 from 64 B to 16 MiB.
var SizeBuckets = prometheus.ExponentialBuckets(64, 4, 10)

// The reasons of postern_proxy_upstream_errors_total.
const (
	// UpstreamErrorDial is a connection to the endpoint that failed
	// (refused, unreachable, or not made within --upstream-connect-timeout).
	UpstreamErrorDial = "dial"
	// UpstreamErrorTimeout is an endpoint that did not answer in time
	// (--upstream-response-timeout).
	UpstreamErrorTimeout = "timeout"
	// UpstreamErrorReset is an endpoint that closed or reset the
	// connection before its response headers.
	UpstreamErrorReset = "reset"
	// UpstreamErrorTLS is a failed TLS handshake with an HTTPS or GRPCS
	// endpoint.
	UpstreamErrorTLS = "tls"
	// UpstreamErrorOther is anything else (an invalid response, a refused
	// protocol switch).
	UpstreamErrorOther = "other"
)

var upstreamErrorReasons = [...]string{UpstreamErrorDial, UpstreamErrorTimeout, UpstreamErrorReset, UpstreamErrorTLS, UpstreamErrorOther}

// methods are the values of the method label; any other method is counted
// as "OTHER", so that clients cannot make up label values.
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace, "OTHER",
}

// methodIndex returns the index in methods of the label for method m.
func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodConnect:
		return 7
	case http.MethodTrace:
		return 8
	}
	return len(methods) - 1
}

// Metrics are the proxy's Prometheus metrics. One Metrics serves one
// Handler (Options.Metrics) and the Servers in front of it
// (ServerOptions.Metrics). Its methods may be called on a nil *Metrics,
// which records nothing.
//
// Recording a request costs no label hashing in the common case: the
// children of the labelled vectors are resolved once per (namespace,
// ingress, service) and found by *route.Route in a map rebuilt on each
// table swap, and the request counters per (method, code) in a
// copy-on-write map keyed by an integer.
type Metrics struct {
	requests     *prometheus.CounterVec   // namespace, ingress, service, method, code
	duration     *prometheus.HistogramVec // namespace, ingress, service
	upstream     *prometheus.HistogramVec // namespace, ingress, service
	requestSize  *prometheus.HistogramVec // namespace, ingress, service
	responseSize *prometheus.HistogramVec // namespace, ingress, service
	openConns    prometheus.Gauge
	upstreamErrs [len(upstreamErrorReasons)]prometheus.Counter
	retries      prometheus.Counter

	// routes finds the metrics of a route of the table being served.
	routes atomic.Pointer[map[*route.Route]*routeMetrics]

	mu       sync.Mutex                    // guards byLabels; serialises sync
	byLabels map[routeLabels]*routeMetrics // every label set with metrics
	none     *routeMetrics                 // requests without a route
}

// routeLabels are the labels a route gives its requests' metrics.
type routeLabels struct{ namespace, ingress, service string }

func labelsOf(rt *route.Route) routeLabels {
	l := routeLabels{namespace: rt.Source.Namespace, ingress: rt.Source.Name}
	if be := rt.Backend; be != nil {
		if l.namespace == "" {
			l.namespace = be.Namespace
		}
		l.service = be.Service
	}
	return l
}

// routeMetrics are the resolved metric children of one label set.
type routeMetrics struct {
	m      *Metrics
	labels routeLabels

	ready                       atomic.Bool // duration, reqSize and respSize are set
	upstreamReady               atomic.Bool // upstream is set
	mu                          sync.Mutex  // serialises setting them and adding counters
	duration, reqSize, respSize prometheus.Observer
	upstream                    prometheus.Observer
	counters                    atomic.Pointer[map[uint32]prometheus.Counter] // by methodIndex<<16 | code
}

// NewMetrics registers the proxy's metrics on reg (cmd/postern passes its
// *prometheus.Registry) and returns them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	routeLabelNames := []string{"namespace", "ingress", "service"}
	latency := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "postern", Subsystem: "proxy", Name: name, Help: help,
			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, routeLabelNames)
	}
	size := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "postern", Subsystem: "proxy", Name: name, Help: help, Buckets: SizeBuckets,
		}, routeLabelNames)
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "postern", Subsystem: "proxy", Name: "requests_total",
			Help: "Requests answered, by the Ingress and Service of the route that matched (empty when none did), method and status code (499: the client went away).",
		}, []string{"namespace", "ingress", "service", "method", "code"}),
		duration: latency("request_duration_seconds",
			"Time from receiving a request's headers to the end of its response (for WebSockets, of the tunnel)."),
		upstream: latency("upstream_response_seconds",
			"Time from sending a request to an endpoint until its response headers arrived or the attempt failed."),
		requestSize: size("request_size_bytes",
			"Bytes of request bodies forwarded to endpoints."),
		responseSize: size("response_size_bytes",
			"Bytes of response bodies sent to clients."),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "postern", Subsystem: "proxy", Name: "open_connections",
			Help: "Client connections open now, HTTP and HTTPS, WebSocket tunnels included.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "postern", Subsystem: "proxy", Name: "retries_total",
			Help: "Requests sent again to another endpoint after a failed attempt.",
		}),
		byLabels: make(map[routeLabels]*routeMetrics),
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "postern", Subsystem: "proxy", Name: "upstream_errors_total",
		Help: "Attempts to reach an endpoint that failed, by reason: dial, timeout, reset, tls, other.",
	}, []string{"reason"})
	for i, reason := range upstreamErrorReasons {
		m.upstreamErrs[i] = errs.WithLabelValues(reason)
	}
	reg.MustRegister(m.requests, m.duration, m.upstream, m.requestSize, m.responseSize, m.openConns, errs, m.retries)

	m.none = m.newRouteMetrics(routeLabels{})
	m.byLabels[routeLabels{}] = m.none
	empty := map[*route.Route]*routeMetrics{}
	m.routes.Store(&empty)
	return m
}

func (m *Metrics) newRouteMetrics(l routeLabels) *routeMetrics {
	rm := &routeMetrics{m: m, labels: l}
	empty := map[uint32]prometheus.Counter{}
	rm.counters.Store(&empty)
	return rm
}

// sync prepares the metrics of the routes of t, the table about to be
// served, and forgets the series of label sets t no longer has (an Ingress
// or Service that went away), so that their number stays bounded by the
// cluster's objects over the life of the process.
func (m *Metrics) sync(t *route.Table) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	routes := make(map[*route.Route]*routeMetrics)
	keep := map[routeLabels]bool{{}: true}
	add := func(rt *route.Route) {
		if rt == nil {
			return
		}
		l := labelsOf(rt)
		rm := m.byLabels[l]
		if rm == nil {
			rm = m.newRouteMetrics(l)
			m.byLabels[l] = rm
		}
		routes[rt] = rm
		keep[l] = true
	}
	for _, vh := range t.VirtualHosts {
		for _, rt := range vh.Routes {
			add(rt)
		}
	}
	add(t.Default)
	for l := range m.byLabels {
		if !keep[l] {
			delete(m.byLabels, l)
			m.deleteSeries(l)
		}
	}
	m.routes.Store(&routes)
}

// patch prepares the metrics for a table that p says differs from the
// last one synced only in the routes p.Routes replaces: each copy takes
// its original's children (a patch keeps a route's source and Service, so
// its labels). Its cost is one copy of the route map. It reports false,
// changing nothing, before the first sync.
func (m *Metrics) patch(p *route.Patch) bool {
	if m == nil || len(p.Routes) == 0 {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.routes.Load()
	if cur == nil {
		return false
	}
	routes := maps.Clone(*cur)
	for or, nr := range p.Routes {
		rm := routes[or]
		if rm == nil || labelsOf(nr) != rm.labels {
			rm = m.byLabels[labelsOf(nr)]
			if rm == nil {
				rm = m.newRouteMetrics(labelsOf(nr))
				m.byLabels[rm.labels] = rm
			}
		}
		delete(routes, or)
		routes[nr] = rm
	}
	m.routes.Store(&routes)
	return true
}

func (m *Metrics) deleteSeries(l routeLabels) {
	m.requests.DeletePartialMatch(prometheus.Labels{"namespace": l.namespace, "ingress": l.ingress, "service": l.service})
	for _, v := range []*prometheus.HistogramVec{m.duration, m.upstream, m.requestSize, m.responseSize} {
		v.DeleteLabelValues(l.namespace, l.ingress, l.service)
	}
}

// forRoute returns the metrics of the requests rt serves (nil: no route).
func (m *Metrics) forRoute(rt *route.Route) *routeMetrics {
	if rt == nil {
		return m.none
	}
	if rm := (*m.routes.Load())[rt]; rm != nil {
		return rm
	}
	// A route of an older table, still serving a request begun before
	// the swap.
	l := labelsOf(rt)
	m.mu.Lock()
	defer m.mu.Unlock()
	rm := m.byLabels[l]
	if rm == nil {
		rm = m.newRouteMetrics(l)
		m.byLabels[l] = rm
	}
	return rm
}

// observers returns rm with its histogram children resolved. They are
// resolved on the first request, so that routes without traffic export no
// series.
func (rm *routeMetrics) observers() *routeMetrics {
	if rm.ready.Load() {
		return rm
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if !rm.ready.Load() {
		l := rm.labels
		rm.duration = rm.m.duration.WithLabelValues(l.namespace, l.ingress, l.service)
		rm.reqSize = rm.m.requestSize.WithLabelValues(l.namespace, l.ingress, l.service)
		rm.respSize = rm.m.responseSize.WithLabelValues(l.namespace, l.ingress, l.service)
		rm.ready.Store(true)
	}
	return rm
}

// upstreamObserver returns the upstream_response_seconds child, resolved
// on the first request sent to an endpoint: label sets whose requests
// never reach one (no route, no endpoints) have no such series.
func (rm *routeMetrics) upstreamObserver() prometheus.Observer {
	if rm.upstreamReady.Load() {
		return rm.upstream
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if !rm.upstreamReady.Load() {
		l := rm.labels
		rm.upstream = rm.m.upstream.WithLabelValues(l.namespace, l.ingress, l.service)
		rm.upstreamReady.Store(true)
	}
	return rm.upstream
}

// counter returns the request counter for method (an index in methods)
// and code.
func (rm *routeMetrics) counter(method, code int) prometheus.Counter {
	key := uint32(method)<<16 | uint32(code)
	if c, ok := (*rm.counters.Load())[key]; ok {
		return c
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	old := *rm.counters.Load()
	if c, ok := old[key]; ok {
		return c
	}
	l := rm.labels
	c := rm.m.requests.WithLabelValues(l.namespace, l.ingress, l.service, methods[method], strconv.Itoa(code))
	next := make(map[uint32]prometheus.Counter, len(old)+1)
	maps.Copy(next, old)
	next[key] = c
	rm.counters.Store(&next)
	return c
}

// observe records a finished request.
func (m *Metrics) observe(ob *observation, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.observeRequest(ob.route, methodIndex(ob.req.Method), code, d, ob.st.upstream, ob.st.attempted, ob.st.bodyBytes.Load(), ob.bytesOut)
}

// observeRequest records a finished request of route rt (nil: none
// matched): the Handler's and the fast path's.
func (m *Metrics) observeRequest(rt *route.Route, method, code int, d, upstream time.Duration, attempted bool, bytesIn, bytesOut int64) {
	if m == nil {
		return
	}
	rm := m.forRoute(rt).observers()
	rm.counter(method, code).Inc()
	rm.duration.Observe(d.Seconds())
	if attempted {
		rm.upstreamObserver().Observe(upstream.Seconds())
	}
	rm.reqSize.Observe(float64(bytesIn))
	rm.respSize.Observe(float64(bytesOut))
}

// upstreamError counts a failed attempt to reach an endpoint.
func (m *Metrics) upstreamError(err error) {
	if m == nil {
		return
	}
	reason := upstreamErrorReason(err)
	for i, r := range upstreamErrorReasons {
		if r == reason {
			m.upstreamErrs[i].Inc()
			return
		}
	}
}

// Retried counts a request sent again to another endpoint after a failed
// attempt; the retry logic calls it once per extra attempt.
func (m *Metrics) Retried() {
	if m != nil {
		m.retries.Inc()
	}
}

// connState follows a Server's client connections. Hijacked connections
// (WebSockets) are still open; hijackedClosed counts them out.
func (m *Metrics) connState(state http.ConnState) {
	if m == nil {
		return
	}
	switch state {
	case http.StateNew:
		m.openConns.Inc()
	case http.StateClosed:
		m.openConns.Dec()
	}
}

// hijackedClosed counts out a hijacked connection that was closed: net/http
// reports no StateClosed for those.
func (m *Metrics) hijackedClosed() {
	if m != nil {
		m.openConns.Dec()
	}
}

// upstreamErrorReason classifies a failure to get response headers from
// an endpoint.
func upstreamErrorReason(err error) string {
	var (
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		verifyErr *tls.CertificateVerificationError
		authErr   x509.UnknownAuthorityError
		opErr     *net.OpError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &recordErr), errors.As(err, &alertErr), errors.As(err, &verifyErr), errors.As(err, &authErr),
		strings.Contains(err.Error(), "tls: "), strings.Contains(err.Error(), "TLS handshake"):
		return UpstreamErrorTLS
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return UpstreamErrorDial
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return UpstreamErrorTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return UpstreamErrorReset
	}
	return UpstreamErrorOther
}

// timedTransport measures each attempt to reach an endpoint, for the
// upstream_response_seconds histogram and the access log.
type timedTransport struct{ next http.RoundTripper }

func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	if st == nil {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	st.upstream = time.Since(start)
	st.attempted = true
	return resp, err
}

// observation is one request as the proxy observes it: it is the
// ResponseWriter the request is answered through, recording the status
// and the bytes sent, and setting the X-Request-ID response header. It
// holds the reqState of a proxied request, so that a request costs one
// allocation for both.
type observation struct {
	http.ResponseWriter
	req      *http.Request
	start    time.Time    // zero when nothing observes requests
	route    *route.Route // nil when none matched
	id       [1]string    // the request ID; id[:] is the header value
	code     int          // the status sent (101 for a tunnel); 0 until then
	bytesOut int64        // response body bytes written
	st       reqState
}

// begin starts observing r, answered through w.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request) *observation {
	ob := &observation{ResponseWriter: w, req: r}
	ob.id[0] = requestID(r.Header[HeaderRequestID])
	if h.observing {
		ob.start = time.Now()
	}
	return ob
}

// end records a request that was answered.
func (h *Handler) end(ob *observation) {
	if ob.code == 0 {
		// Nothing was written: net/http sends a 200 when the handler
		// returns, with the headers as they are now.
		ob.Header()[HeaderRequestID] = ob.id[:]
	}
	if !h.observing {
		return
	}
	d := time.Since(ob.start)
	code := ob.code
	if code == 0 {
		code = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	h.metrics.observe(ob, code, d)
	h.accessLog.record(ob, code, d)
}

// Observe returns next wrapped so that the requests it serves are counted,
// access-logged and given a request ID like those h serves itself: for the
// handlers a listener puts in front of h (HTTPS redirects, ACME challenges,
// 421 answers). A request next hands on to h is observed once, with the
// route h found for it.
func (h *Handler) Observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*observation); ok {
			next.ServeHTTP(w, r)
			return
		}
		ob := h.begin(w, r)
		defer h.end(ob)
		next.ServeHTTP(ob, r)
	})
}

// noteStatus records code as the status of a request answered through w
// when nothing is sent (499: the client went away).
func noteStatus(w http.ResponseWriter, code int) {
	if ob, ok := w.(*observation); ok && ob.code == 0 {
		ob.code = code
	}
}

// WriteHeader sets the X-Request-ID header, replacing any the backend
// sent, and records the final status.
func (o *observation) WriteHeader(code int) {
	// 1xx responses other than 101 may come first, from the Transport's
	// goroutine (Got1xxResponse); they are not the status.
	if (code >= 200 || code == http.StatusSwitchingProtocols) && o.code == 0 {
		o.code = code
	}
	o.Header()[HeaderRequestID] = o.id[:]
	o.ResponseWriter.WriteHeader(code)
}

// Write writes a response body, counting its bytes.
func (o *observation) Write(p []byte) (int, error) {
	if o.code == 0 {
		o.WriteHeader(http.StatusOK)
	}
	n, err := o.ResponseWriter.Write(p)
	o.bytesOut += int64(n)
	return n, err
}

// Flush sends what was written so far.
func (o *observation) Flush() {
	_ = http.NewResponseController(o.ResponseWriter).Flush()
}

// Hijack hands the connection over for a protocol switch (WebSocket): the
// status is 101, and the response header, which the ReverseProxy writes
// itself, carries the request ID.
func (o *observation) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	o.Header()[HeaderRequestID] = o.id[:]
	c, brw, err := http.NewResponseController(o.ResponseWriter).Hijack()
	if err == nil && o.code == 0 {
		o.code = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap returns the ResponseWriter underneath, for
// http.ResponseController.
func (o *observation) Unwrap() http.ResponseWriter { return o.ResponseWriter }
