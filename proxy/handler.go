package proxy

import (
	"net/http"
	"net/http/httputil"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// Defaults of Options.
const (
	// DefaultDialTimeout bounds connecting to an endpoint.
	DefaultDialTimeout = upstream.DefaultDialTimeout
	// DefaultResponseHeaderTimeout bounds the wait for an endpoint's
	// response headers once the request is sent.
	DefaultResponseHeaderTimeout = upstream.DefaultResponseHeaderTimeout
	// DefaultMaxIdleConnsPerHost is how many idle keep-alive connections
	// are kept per endpoint.
	DefaultMaxIdleConnsPerHost = upstream.DefaultMaxIdleConnsPerHost
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
	// Transport sends requests to endpoints instead of the cluster's own
	// pools; tests and benchmarks set it. A Handler with one has no
	// HTTP/1.1 fast path (the engine speaks to endpoints itself). Nil
	// means the cluster's.
	Transport http.RoundTripper
	// Metrics records every request in Prometheus metrics. Nil means none.
	Metrics *observe.Metrics
	// AccessLog gets a line per request. Nil means no access log.
	AccessLog *observe.AccessLog
	// Health is the passive health tracker: it ejects endpoints that keep
	// failing. Nil means one of the Handler's own with the defaults
	// (balancer.DefaultFailureThreshold and so on); tests set one with a
	// short ejection and a clock of their own.
	Health *balancer.Health
	// Policies run for every routed request, on every engine, after the
	// route's own policies (pipeline.Options.Policies).
	Policies []pipeline.Policy
}

// Handler is the proxy: the pipeline that decides every request, the
// cluster of endpoints it forwards to, and what observes the requests.
// Servers serve it on their listeners (NewServer); every engine a Server
// runs (the HTTP/1.1 fast path, net/http's HTTP/1.1 and HTTP/2) decides
// through the same pipeline.
type Handler struct {
	pipeline *pipeline.Pipeline
	cluster  *upstream.Cluster
	sink     *observe.Sink
	metrics  *observe.Metrics // nil: none
	log      *zap.Logger
	proxy    *httputil.ReverseProxy // the net/http adapter's, for every request
	mirror   *mirrorer              // sends the copies of mirror-target
	custom   bool                   // Options.Transport was given: no fast path
	plain    http.Handler           // ServeHTTP's: a plain listener with no options
}

// New returns a Handler serving an empty table (every request 404) until
// the first Swap.
func New(opts Options) *Handler {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	cluster := upstream.New(upstream.Options{
		Logger:                log,
		DialTimeout:           opts.DialTimeout,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
		Health:                opts.Health,
		Metrics:               opts.Metrics,
	})
	h := &Handler{
		pipeline: pipeline.New(pipeline.Options{Cluster: cluster, Metrics: opts.Metrics, Policies: opts.Policies}),
		cluster:  cluster,
		sink:     observe.NewSink(opts.Metrics, opts.AccessLog),
		metrics:  opts.Metrics,
		log:      log,
		custom:   opts.Transport != nil,
		mirror:   newMirrorer(log, cluster),
	}
	h.proxy = h.newReverseProxy(opts.Transport)
	h.plain = netHTTP{h: h, l: h.pipeline.Listener(pipeline.ListenerOptions{})}
	return h
}

// ServeHTTP serves r as a plain listener without trusted proxies, ACME or
// HTTPS redirect port does (net/http decides it through the pipeline), for
// embedding the proxy in a server of one's own and for tests. A Server
// serves its listeners with their own options, and the fast path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.plain.ServeHTTP(w, r) }

// Swap makes t the table new requests are served from (nil means an empty
// table). Requests already running finish on the table they started with;
// none is blocked or dropped. Balancer state, in-flight counts, passive
// health and connection pools carry over by backend key and endpoint
// address; what t no longer uses is forgotten, and the idle connections to
// endpoints t no longer has are closed (the busy ones when their requests
// end). A table WithBackends made from the one served (an endpoint change)
// is carried over for the changed backends only: at 50,000 endpoints that
// takes about 1.5 ms instead of 50-100.
func (h *Handler) Swap(t *route.Table) { h.pipeline.Swap(t) }

// Table returns the table requests are served from.
func (h *Handler) Table() *route.Table { return h.pipeline.Table() }

// CloseIdleConnections closes the idle keep-alive connections to endpoints.
func (h *Handler) CloseIdleConnections() {
	h.cluster.CloseIdleConnections()
	h.mirror.client.CloseIdleConnections()
}
