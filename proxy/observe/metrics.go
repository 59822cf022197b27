package observe

import (
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
	handoffs     [len(HandoffReasons)]prometheus.Counter
	auth         [len(AuthResults)]prometheus.Observer // by AuthResults
	passthrough  [2]prometheus.Counter                 // failed, spliced
	passBytes    [2]prometheus.Counter                 // sent, received

	// routes finds the metrics of a route and backend of the table being
	// served.
	routes atomic.Pointer[map[routeBackend]*routeMetrics]

	mu       sync.Mutex                    // guards byLabels; serialises sync
	byLabels map[routeLabels]*routeMetrics // every label set with metrics
	none     *routeMetrics                 // requests without a route
}

// routeBackend is a route and one of its backends: the unit whose
// requests share label values.
type routeBackend struct {
	rt *route.Route
	be *route.Backend
}

// routeLabels are the labels a route gives its requests' metrics.
type routeLabels struct{ namespace, ingress, service string }

// labelsOf returns the labels of the requests rt served with be (nil: none
// was chosen, a local answer): the route's source, and the backend's
// Service.
func labelsOf(rt *route.Route, be *route.Backend) routeLabels {
	l := routeLabels{namespace: rt.Source.Namespace, ingress: rt.Source.Name}
	if be != nil {
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
	handoffs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "postern", Subsystem: "proxy", Name: "fastpath_handoffs_total",
		Help: "Requests the HTTP/1.1 fast path handed to net/http with the rest of their connection, by reason (observe.HandoffReasons).",
	}, []string{"reason"})
	for i, reason := range HandoffReasons {
		m.handoffs[i] = handoffs.WithLabelValues(reason)
	}
	auth := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "postern", Subsystem: "proxy", Name: "auth_request_seconds",
		Help:    "Time the requests to external auth services (auth-url) took, by result (observe.AuthResults); answers from the auth cache are not counted.",
		Buckets: DurationBuckets,
	}, []string{"result"})
	for i, r := range AuthResults {
		m.auth[i] = auth.WithLabelValues(r)
	}
	pass := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "postern", Subsystem: "proxy", Name: "passthrough_connections_total",
		Help: "TLS connections sent unopened to an endpoint (ssl-passthrough), by result: spliced, or failed (the endpoint could not be reached).",
	}, []string{"result"})
	m.passthrough = [2]prometheus.Counter{pass.WithLabelValues("failed"), pass.WithLabelValues("spliced")}
	passBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "postern", Subsystem: "proxy", Name: "passthrough_bytes_total",
		Help: "Bytes of ssl-passthrough connections, by direction: sent to the endpoints, received from them.",
	}, []string{"direction"})
	m.passBytes = [2]prometheus.Counter{passBytes.WithLabelValues("sent"), passBytes.WithLabelValues("received")}
	reg.MustRegister(m.requests, m.duration, m.upstream, m.requestSize, m.responseSize, m.openConns, errs, m.retries, handoffs, auth, pass, passBytes)

	m.none = m.newRouteMetrics(routeLabels{})
	m.byLabels[routeLabels{}] = m.none
	empty := map[routeBackend]*routeMetrics{}
	m.routes.Store(&empty)
	return m
}

func (m *Metrics) newRouteMetrics(l routeLabels) *routeMetrics {
	rm := &routeMetrics{m: m, labels: l}
	empty := map[uint32]prometheus.Counter{}
	rm.counters.Store(&empty)
	return rm
}

// Sync prepares the metrics of the routes of t, the table about to be
// served, and forgets the series of label sets t no longer has (an Ingress
// or Service that went away), so that their number stays bounded by the
// cluster's objects over the life of the process.
func (m *Metrics) Sync(t *route.Table) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	routes := make(map[routeBackend]*routeMetrics)
	keep := map[routeLabels]bool{{}: true}
	add := func(rt *route.Route, be *route.Backend) {
		l := labelsOf(rt, be)
		rm := m.byLabels[l]
		if rm == nil {
			rm = m.newRouteMetrics(l)
			m.byLabels[l] = rm
		}
		routes[routeBackend{rt, be}] = rm
		keep[l] = true
	}
	for rt := range t.Routes() {
		for _, be := range backendsOf(rt) {
			add(rt, be)
		}
		add(rt, nil)
	}
	for l := range m.byLabels {
		if !keep[l] {
			delete(m.byLabels, l)
			m.deleteSeries(l)
		}
	}
	m.routes.Store(&routes)
}

// Patch prepares the metrics for a table that p says differs from the
// last one synced only in the routes p.Routes replaces: each copy takes
// its original's children (a patch keeps a route's source and Services,
// so its labels). Its cost is one copy of the route map. It reports false,
// changing nothing, before the first Sync.
func (m *Metrics) Patch(p *route.Patch) bool {
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
	move := func(or *route.Route, ob *route.Backend, nr *route.Route, nb *route.Backend) {
		old := routeBackend{or, ob}
		rm := routes[old]
		if l := labelsOf(nr, nb); rm == nil || l != rm.labels {
			rm = m.byLabels[l]
			if rm == nil {
				rm = m.newRouteMetrics(l)
				m.byLabels[l] = rm
			}
		}
		delete(routes, old)
		routes[routeBackend{nr, nb}] = rm
	}
	for or, nr := range p.Routes {
		obs, nbs := backendsOf(or), backendsOf(nr)
		for i := range min(len(obs), len(nbs)) {
			move(or, obs[i], nr, nbs[i])
		}
		move(or, nil, nr, nil)
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

// forRoute returns the metrics of the requests rt served with be (nil rt:
// no route).
func (m *Metrics) forRoute(rt *route.Route, be *route.Backend) *routeMetrics {
	if rt == nil {
		return m.none
	}
	if rm := (*m.routes.Load())[routeBackend{rt, be}]; rm != nil {
		return rm
	}
	// A route of an older table, still serving a request begun before
	// the swap.
	l := labelsOf(rt, be)
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

// record counts a finished request.
func (m *Metrics) record(r *Record) {
	if m == nil {
		return
	}
	rm := m.forRoute(r.Route, r.labelBackend()).observers()
	rm.counter(methodIndex(r.Method), r.Status).Inc()
	rm.duration.Observe(r.Duration.Seconds())
	if r.Attempted {
		rm.upstreamObserver().Observe(r.UpstreamDuration.Seconds())
	}
	rm.reqSize.Observe(float64(r.BytesIn))
	rm.respSize.Observe(float64(r.BytesOut))
}

// UpstreamError counts a failed attempt to reach an endpoint, by the
// reason UpstreamErrorReason gives.
func (m *Metrics) UpstreamError(err error) {
	if m == nil {
		return
	}
	reason := UpstreamErrorReason(err)
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

// Handoff counts a request the HTTP/1.1 fast path handed to net/http, for
// reason, one of HandoffReasons (anything else counts as HandoffOther).
func (m *Metrics) Handoff(reason string) {
	if m == nil {
		return
	}
	for i, r := range HandoffReasons {
		if r == reason {
			m.handoffs[i].Inc()
			return
		}
	}
	m.handoffs[len(HandoffReasons)-1].Inc()
}

// AuthResults are the results of a request to an external auth service:
// a 2xx answer, a 401 or 403, another status, no answer (refused,
// timed out, unreachable).
var AuthResults = [...]string{"allowed", "denied", "error", "unreachable"}

// The indexes of AuthResults.
const (
	AuthAllowed = iota
	AuthDenied
	AuthError
	AuthUnreachable
)

// AuthRequest records a request to an external auth service that took d,
// with result, one of the AuthResults indexes.
func (m *Metrics) AuthRequest(result int, d time.Duration) {
	if m != nil && result >= 0 && result < len(m.auth) {
		m.auth[result].Observe(d.Seconds())
	}
}

// Passthrough records an ssl-passthrough connection that was spliced
// (with its bytes each way) or that could not reach its endpoint.
func (m *Metrics) Passthrough(spliced bool, sent, received int64) {
	if m == nil {
		return
	}
	if !spliced {
		m.passthrough[0].Inc()
		return
	}
	m.passthrough[1].Inc()
	m.passBytes[0].Add(float64(sent))
	m.passBytes[1].Add(float64(received))
}

// ConnOpened counts a client connection a listener accepted.
func (m *Metrics) ConnOpened() {
	if m != nil {
		m.openConns.Inc()
	}
}

// ConnClosed counts out a client connection that was closed.
func (m *Metrics) ConnClosed() {
	if m != nil {
		m.openConns.Dec()
	}
}

// UpstreamErrorReason classifies a failure to get response headers from
// an endpoint: one of the UpstreamError* reasons.
func UpstreamErrorReason(err error) string {
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
		// crypto/tls wraps some handshake failures in plain errors
		// whose only mark is their text.
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
