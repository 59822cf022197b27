package pipeline

import "github.com/postern-dev/postern/proxy/route"

// MirrorTo is where a copy of the request goes (route.Mirror), with its
// URL evaluated for the request. The engine that forwards the request
// hands the copy to the proxy's mirror sender.
type MirrorTo struct {
	URL  string
	Host string
	Body bool
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
