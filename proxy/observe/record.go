package observe

import (
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// Record is one request as the proxy observed it, whatever engine served
// it: the engine fills it as the request goes and hands it to Sink.Done
// when the response has ended. Fields that do not apply are zero.
type Record struct {
	// Start is when the request's head was read; zero when nothing
	// observes requests (Sink.On is false).
	Start time.Time
	// Duration runs from Start to the end of the response (for a tunnel,
	// of the tunnel).
	Duration time.Duration
	// ID is the request ID (X-Request-Id) sent to the endpoint and back.
	ID string
	// Client is who the access log names as the client: the peer's
	// address with its port, or the real client found behind a trusted
	// proxy, without one.
	Client string
	// Method, Host, Path and Proto are the request's: Path is the decoded
	// path, without the query, which may carry secrets.
	Method, Host, Path, Proto string
	// Status is the status sent (101 for a tunnel), or
	// StatusClientClosedRequest when the client went away first.
	Status int
	// BytesIn and BytesOut are the body bytes read from the client and
	// written to it.
	BytesIn, BytesOut int64
	// Route is the route that matched; nil when none did.
	Route *route.Route
	// Backend is the backend of Route the request went to; nil when none
	// was chosen (a local answer).
	Backend *route.Backend
	// Upstream is the address of the endpoint of the last attempt; empty
	// when none was picked.
	Upstream string
	// Attempted is true when an attempt to reach an endpoint was made;
	// UpstreamDuration is then how long the last one took, from before
	// connecting until the response head came or the attempt failed.
	Attempted        bool
	UpstreamDuration time.Duration
}

// StatusClientClosedRequest is the status recorded, never sent, for a
// request whose client went away before the response: nginx's 499.
const StatusClientClosedRequest = 499

// labelBackend returns the backend whose Service labels the request: the
// one chosen, or when none was (the request was answered before the
// choice, with a 413 say) the route's only backend, or its mainline one
// when the other is a canary.
func (r *Record) labelBackend() *route.Backend {
	if r.Backend != nil || r.Route == nil {
		return r.Backend
	}
	if len(r.Route.Backends) == 1 || r.Route.Canary != nil {
		return r.Route.First()
	}
	return nil
}

// backendsOf returns the backends of rt.
func backendsOf(rt *route.Route) []*route.Backend {
	out := make([]*route.Backend, 0, len(rt.Backends))
	for _, wb := range rt.Backends {
		out = append(out, wb.Backend)
	}
	return out
}

// The reasons of postern_proxy_fastpath_handoffs_total: why the HTTP/1.1
// fast path gave a request, and the rest of its connection, to net/http.
const (
	// HandoffUpgrade is a protocol switch (WebSocket): Upgrade, or
	// Connection: upgrade.
	HandoffUpgrade = "upgrade"
	// HandoffExpect is an Expect field (100-continue).
	HandoffExpect = "expect"
	// HandoffHeadSize is a request head larger than the engine's buffer.
	HandoffHeadSize = "head-size"
	// HandoffTarget is a request line outside origin-form HTTP/1.1: an
	// absolute-form or asterisk-form target, CONNECT, HTTP/1.0.
	HandoffTarget = "request-line"
	// HandoffFraming is a head the strict parser refuses otherwise (a
	// field net/http reads differently, TE, Trailer, a Connection option
	// naming other fields, a malformed field): net/http and the framing
	// guard judge it.
	HandoffFraming = "framing"
	// HandoffBackendProtocol is a route to a backend the engine does not
	// speak to (HTTPS, H2C, gRPC).
	HandoffBackendProtocol = "backend-protocol"
	// HandoffH2C is a connection that opens with the HTTP/2 preface:
	// HTTP/2 without TLS, with prior knowledge.
	HandoffH2C = "h2c"
	// HandoffOther is any other reason.
	HandoffOther = "other"
)

// HandoffReasons are the values of the reason label of
// postern_proxy_fastpath_handoffs_total, HandoffOther last.
var HandoffReasons = [...]string{HandoffUpgrade, HandoffExpect, HandoffHeadSize, HandoffTarget, HandoffFraming, HandoffBackendProtocol, HandoffH2C, HandoffOther}

// Sink takes the Records of finished requests to the metrics and the
// access log. A nil *Sink, or one without either, records nothing.
type Sink struct {
	metrics   *Metrics
	accessLog *AccessLog
}

// NewSink returns the sink of m and a (either may be nil).
func NewSink(m *Metrics, a *AccessLog) *Sink {
	return &Sink{metrics: m, accessLog: a}
}

// On reports whether anything observes requests: engines take the time
// and fill a Record only then.
func (s *Sink) On() bool { return s != nil && (s.metrics != nil || s.accessLog != nil) }

// Metrics returns the sink's metrics (nil: none).
func (s *Sink) Metrics() *Metrics {
	if s == nil {
		return nil
	}
	return s.metrics
}

// WantsPath reports whether Done will read Record.Path (an access log
// line): an engine that must copy the path to keep it can skip that.
func (s *Sink) WantsPath() bool { return s != nil && s.accessLog != nil }

// Done records a finished request. It does not block: the access log
// line is queued, or dropped when its writer falls behind.
func (s *Sink) Done(r *Record) {
	if !s.On() {
		return
	}
	s.metrics.record(r)
	s.accessLog.record(r)
}
