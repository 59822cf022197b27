package pipeline

import (
	"slices"
	"strconv"

	"github.com/postern-dev/postern/proxy/route"
)

// errorPages is the route policy of route.ErrorPages: it leaves the
// route's error backend and codes on the exchange, for Decide (a request
// without an endpoint goes to the error backend with X-Code 503) and for
// the engines, which call Pipeline.Intercept on the endpoint's response
// head.
type errorPages struct{ e *errorRoute }

// errorRoute is what the error backend's requests need of their route.
type errorRoute struct {
	be        *route.Backend
	codes     []int
	intercept bool
	// The X-Namespace, X-Ingress-Name, X-Service-Name and X-Service-Port
	// of the route's own backend.
	namespace, ingress, service, port string
}

func newErrorPages(rt *route.Route) (errorPages, bool) {
	be := rt.ErrorBackend()
	if be == nil {
		return errorPages{}, false
	}
	e := &errorRoute{be: be, namespace: rt.Source.Namespace, ingress: rt.Source.Name}
	if p := rt.Policy; p != nil && p.ErrorPages != nil {
		e.codes, e.intercept = p.ErrorPages.Codes, p.ErrorPages.Intercept
	}
	if main := rt.Backends[0].Backend; main != be {
		e.service, e.port = main.Service, main.Port
	}
	return errorPages{e: e}, true
}

func (p errorPages) Request(x *Exchange) { x.errors = p.e }

// Intercept reports, for the response head of status that the endpoint
// sent to x's request, whether the route sends it to its error backend
// instead (custom-http-errors), and if so returns the endpoint to send the
// request to, x made over for it: the error backend, the target "/", the
// X-Code fields; nil when not (a status not listed, no endpoint, or once
// already). The engine drops the endpoint's response and sends the
// request, without a body, again; the client gets what the error backend
// answers.
func (p *Pipeline) Intercept(x *Exchange, status int) *route.Endpoint {
	e := x.errors
	if e == nil || !e.intercept || status < 400 || !slices.Contains(e.codes, status) {
		return nil
	}
	return p.toErrorBackend(x, status)
}

// toErrorBackend makes x a request to its error backend with X-Code code
// and returns the endpoint picked; nil when the error backend has none.
func (p *Pipeline) toErrorBackend(x *Exchange, code int) *route.Endpoint {
	e := x.errors
	x.errors = nil // once
	ep := p.cluster.Pick(e.be, 0)
	if ep == nil {
		return nil
	}
	x.Backend, x.Endpoint, x.Target, x.UpstreamHost = e.be, ep, "/", ""
	x.sticky, x.hash = sticky{}, hashed{}
	x.RespRewrite = nil
	accept, _ := x.In.Header("Accept")
	x.Req.Set("X-Code", strconv.Itoa(code))
	x.Req.Set("X-Format", accept)
	x.Req.Set("X-Original-Uri", x.In.RequestURI())
	x.Req.Set("X-Namespace", e.namespace)
	x.Req.Set("X-Ingress-Name", e.ingress)
	x.Req.Set("X-Service-Name", e.service)
	x.Req.Set("X-Service-Port", e.port)
	return ep
}
