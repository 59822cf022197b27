package pipeline

import (
	"crypto/x509"
	"net/http"
	"net/netip"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// Exchange is one request and what the pipeline decided for it. The
// engine fills the fields above the line and calls Listener.Decide; the
// decision is then exactly one of: a hand-off (Handoff not empty: the
// engine cannot carry this request, another engine will decide it anew),
// a local answer (Reply.Status not zero), or a forward to Endpoint with
// the edits and settings given.
//
// An engine may reuse one Exchange for the requests of a connection
// (Reset between them); Decide does not keep it.
type Exchange struct {
	// In is the request head.
	In Head
	// Remote is the peer's address as "ip:port" (the connection's, or the
	// PROXY protocol's source), for logs; PeerIP is its IP alone, as text.
	// Both are empty when the connection is not over IP.
	Remote, PeerIP string
	// Peer is the peer's address when the engine has it parsed; an
	// invalid Addr makes the pipeline parse PeerIP when it needs to.
	Peer netip.Addr
	// ServerName is the TLS server name (SNI) of a connection of a secure
	// listener.
	ServerName string
	// PeerCertificates are the certificates a TLS client sent, its own
	// first; none when it sent none (or asked for none).
	PeerCertificates []*x509.Certificate
	// Proto is the protocol as the access log names it ("HTTP/1.1",
	// "HTTP/2.0"); ProtoMajor its major version.
	Proto      string
	ProtoMajor int
	// Caps says which backends the engine can send to; a route to others
	// is handed off (HandoffBackendProtocol). Zero means every backend.
	Caps Caps
	// Secure is set for a request that came over TLS; Decide also sets it
	// for every request of a TLS listener.
	Secure bool

	// ---- decided ----

	// ID is the request ID, sent to the endpoint and back.
	ID string
	// Client is who the access log names as the client: Remote, or the
	// real client behind a trusted proxy.
	Client string
	// ClientIP is the client's IP address as text: PeerIP, or the real
	// client behind a trusted proxy ($remote_addr after nginx's realip);
	// empty when the connection is not over IP.
	ClientIP string
	// Route is the route that matched; nil when none did.
	Route *route.Route
	// Backend is the backend of Route chosen; nil before the choice.
	Backend *route.Backend
	// Endpoint is the endpoint picked for the first attempt.
	Endpoint *route.Endpoint
	// Key is the balancer's hash key (0: none).
	Key uint64
	// Settings bound the forward: timeouts, retries, body limit.
	Settings upstream.Settings
	// Target, when not empty, is the request target (path and query,
	// escaped) sent to the endpoint instead of the client's: a rewrite's.
	Target string
	// UpstreamHost, when not empty, is the Host sent to the endpoint
	// instead of the client's (upstream-vhost).
	UpstreamHost string
	// Req are the edits to the request head sent to the endpoint; Resp
	// the edits to every response head sent to the client.
	Req, Resp Edits
	// Mirror, when set, is where the engine sends a copy of the request
	// once it is forwarded (mirror-target).
	Mirror *MirrorTo
	// RespRewrite, when set, rewrites the Location, Refresh and
	// Set-Cookie fields of the endpoint's response head (the engines call
	// RewriteResponseField); Postern's own answers are not rewritten.
	RespRewrite *route.ResponseRewrite

	sticky sticky // the route's affinity and the request's cookie
	hash   hashed // upstream-hash-by's key
	// errors is the route's error backend (default-backend,
	// custom-http-errors); nil: none, or already used.
	errors *errorRoute
	// held, when not nil, is the zone whose limit-connections slot of
	// heldIP the request holds until Done.
	held   *zone
	heldIP netip.Addr
	// ListenerPort is the port clients reach the request's listener on
	// (ListenerOptions.Port).
	ListenerPort int
	// Reply, when its Status is not zero, is the answer: nothing is
	// forwarded.
	Reply Reply
	// Handoff, when not empty, says why the engine cannot carry the
	// request (one of the observe.Handoff* reasons).
	Handoff string

	table *route.Table   // the table Decide loaded
	https *httpsRedirect // the plain listener's redirect to HTTPS; nil on TLS
	// plainNoCert is set on a plain HTTP request of a host that wants a
	// client certificate, until the redirect to HTTPS answers it.
	plainNoCert bool
	// viaHTTPS is set when a trusted proxy said, in X-Forwarded-Proto,
	// that the client reached it over HTTPS.
	viaHTTPS bool
}

// Reset empties x for the next request, ending the last one (Done).
func (x *Exchange) Reset() {
	x.Done()
	*x = Exchange{}
}

// Done ends the exchange: the engine calls it once the response is
// written, or the request abandoned, and gives back what the decision
// holds (a limit-connections slot). Calling it again does nothing.
func (x *Exchange) Done() {
	if x.held != nil {
		x.held.release(x.heldIP)
		x.held = nil
	}
}

// Decided reports whether the request is answered or handed off: the
// policies after it do not run.
func (x *Exchange) Decided() bool { return x.Reply.Status != 0 || x.Handoff != "" }

// Caps are the backends an engine can send requests to.
type Caps uint8

// The capabilities of engines.
const (
	// CapH1 is plain HTTP/1.1 (route.ProtocolHTTP).
	CapH1 Caps = 1 << iota
	// CapH1TLS is HTTP/1.1 over TLS (route.ProtocolHTTPS).
	CapH1TLS
	// CapH2 is HTTP/2, with or without TLS (H2C, GRPC, GRPCS).
	CapH2
)

// capOf returns the capability a backend of protocol p needs.
func capOf(p route.Protocol) Caps {
	switch upstream.KindOf(p) {
	case upstream.KindH1TLS:
		return CapH1TLS
	case upstream.KindH2C, upstream.KindH2TLS:
		return CapH2
	}
	return CapH1
}

// Reply is an answer the proxy makes itself.
type Reply struct {
	// Status is the status code; zero means no answer.
	Status int
	// Fields are the reply's header fields, before the response edits
	// (X-Request-Id, HSTS). The engine adds Content-Length (of Body) and
	// Date.
	Fields []Edit
	// Body is the reply's body.
	Body string
	// Close asks the engine to close the connection after the reply
	// (RFC 9112 §9.6): the rest of the request is not read.
	Close bool
	// Reason is why, for the debug log.
	Reason string
}

// errorBodies are the bodies of the error answers the proxy makes itself:
// short, generic, and never a backend address or an error text, which
// would tell a client about the cluster's insides.
var errorBodies = map[int]string{
	http.StatusBadRequest:            "bad request\n",
	http.StatusNotFound:              "not found\n",
	http.StatusMethodNotAllowed:      "method not allowed\n",
	http.StatusRequestEntityTooLarge: "content too large\n",
	http.StatusBadGateway:            "bad gateway\n",
	http.StatusServiceUnavailable:    "service unavailable\n",
	http.StatusGatewayTimeout:        "gateway timeout\n",
}

// errorFields are the fields of every error answer.
var errorFields = []Edit{
	{Op: Set, Name: "Content-Type", Value: "text/plain; charset=utf-8"},
	{Op: Set, Name: "X-Content-Type-Options", Value: "nosniff"},
}

// ErrorBody returns the body of the error answer for code.
func ErrorBody(code int) string {
	if body, ok := errorBodies[code]; ok {
		return body
	}
	return strings.ToLower(http.StatusText(code)) + "\n"
}

// ErrorReply returns the proxy's error answer for code: plain text,
// generic, why in reason (logged, never sent).
func ErrorReply(code int, reason string) Reply {
	return Reply{Status: code, Fields: errorFields, Body: ErrorBody(code), Reason: reason}
}

// fail answers x with the error answer for code.
func (x *Exchange) fail(code int, reason string) { x.Reply = ErrorReply(code, reason) }
