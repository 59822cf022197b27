package pipeline

import (
	"math/rand/v2"

	"github.com/postern-dev/postern/proxy/route"
)

// MirrorTo is where a copy of the request goes (route.Mirror), with its
// URL evaluated for the request. The engine that forwards the request
// hands the copy to the proxy's mirror sender.
type MirrorTo struct {
	URL  string
	Host string
	Body bool
	// Backends, instead of URL, are backends a copy goes to each (a
	// Gateway API RequestMirror filter), to an endpoint the mirror
	// sender picks, for the request's URI (the target as the client
	// sent it) and with its Host.
	Backends []*route.Backend
	URI      string
}

// mirror is the route policy of route.Mirror. It runs last: only a
// request that is forwarded is copied, as nginx's mirror runs in the
// phase before the content.
type mirror struct{ m *route.Mirror }

func newMirror(rt *route.Route) (mirror, bool) {
	if rt.Policy == nil || rt.Policy.Mirror == nil || rt.Policy.Mirror.Target == nil {
		return mirror{}, false
	}
	return mirror{m: rt.Policy.Mirror}, true
}

func (m mirror) Request(x *Exchange) {
	x.Mirror = &MirrorTo{URL: x.ExpandString(m.m.Target, nil), Host: m.m.Host, Body: m.m.Body}
}

// backendMirror is the route policy of the mirror backends of a route
// (route.WeightedBackend.Mirror): each gets a copy of its share of the
// requests forwarded, body included. It runs last, as mirror does.
type backendMirror struct{}

// requestURI is the request's target as the client sent it.
var requestURI = func() *route.Template {
	t, err := route.ParseTemplate("$request_uri", false)
	if err != nil {
		panic(err)
	}
	return t
}()

func newBackendMirror(rt *route.Route) (backendMirror, bool) {
	for _, wb := range rt.Backends {
		if wb.Mirror != nil {
			return backendMirror{}, true
		}
	}
	return backendMirror{}, false
}

func (backendMirror) Request(x *Exchange) {
	var to []*route.Backend
	for _, wb := range x.Route.Backends {
		if s := wb.Mirror; s != nil && s.Denominator > 0 && (s.Numerator >= s.Denominator || rand.Int32N(s.Denominator) < s.Numerator) {
			to = append(to, wb.Backend)
		}
	}
	if len(to) == 0 {
		return
	}
	x.Mirror = &MirrorTo{Host: x.In.Host(), Body: true, Backends: to, URI: x.ExpandString(requestURI, nil)}
}
