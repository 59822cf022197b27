package pipeline

import (
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// gatewayTable has the routes of the Gateway API filters on gw.test:
// redirects of each part, rewrites of host and path, and a route whose
// backends are split between a Service and a backendRef that could not
// be resolved.
func gatewayTable() *route.Table {
	web := &route.Backend{Key: "ns/web:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	bad := &route.Backend{Key: "ns/gateway/unresolved", Endpoints: []route.Endpoint{}, Unavailable: "not found", FailStatus: 500}
	prefix := func(path string, pol *route.Policy) *route.Route {
		return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Policy: pol, Backends: route.Single(web)}
	}
	redirect := func(rd route.URLRedirect) *route.Policy { return &route.Policy{URLRedirect: &rd} }
	pm := func(typ route.PathModifierType, value, prefix string) *route.PathModifier {
		return &route.PathModifier{Type: typ, Value: value, Prefix: prefix}
	}
	deep := route.NewVirtualHost("*.deep.test", []*route.Route{prefix("/", nil)})
	deep.AnyDepth = true
	return route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("gw.test", []*route.Route{
			prefix("/scheme", redirect(route.URLRedirect{Scheme: "https"})),
			prefix("/host", redirect(route.URLRedirect{Host: "other.test", Code: 301})),
			prefix("/port", redirect(route.URLRedirect{Port: 8443})),
			prefix("/scheme-port", redirect(route.URLRedirect{Scheme: "https", Port: 443})),
			prefix("/full", redirect(route.URLRedirect{Path: pm(route.ReplaceFullPath, "/new", ""), Code: 308})),
			prefix("/pre", redirect(route.URLRedirect{Path: pm(route.ReplacePrefixMatch, "/post", "/pre"), Code: 303})),
			prefix("/rw-host", &route.Policy{URLRewrite: &route.URLRewrite{Host: "internal.test"}}),
			prefix("/strip", &route.Policy{URLRewrite: &route.URLRewrite{Path: pm(route.ReplacePrefixMatch, "/", "/strip")}}),
			prefix("/full-rw", &route.Policy{URLRewrite: &route.URLRewrite{Path: pm(route.ReplaceFullPath, "/one", "")}}),
			{Match: route.Match{PathType: route.PathPrefix, Path: "/unresolved"}, Backends: route.Single(bad)},
		}),
		deep,
		route.NewVirtualHost("*.shallow.test", []*route.Route{prefix("/", nil)}),
	}, nil)
}

// TestGatewayRedirect: the RequestRedirect filter answers with the
// request's URL, parts replaced; the port follows the scheme when one is
// set, else the listener's, and the scheme's own port is left out.
func TestGatewayRedirect(t *testing.T) {
	t.Parallel()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(gatewayTable())
	plain := p.Listener(ListenerOptions{})
	alt := p.Listener(ListenerOptions{Port: 8080})
	secure := p.Listener(ListenerOptions{Secure: true})
	runRedirectCases(t, []redirectCase{
		{name: "scheme, port 443 left out", l: plain, in: testHead{host: "gw.test", path: "/scheme/a", query: "q=1"}, status: 302, location: "https://gw.test/scheme/a?q=1"},
		{name: "scheme from another listener port", l: alt, in: testHead{host: "gw.test:8080", path: "/scheme"}, status: 302, location: "https://gw.test/scheme"},
		{name: "host, the listener's port", l: alt, in: testHead{host: "gw.test:8080", path: "/host"}, status: 301, location: "http://other.test:8080/host"},
		{name: "host on port 80", l: plain, in: testHead{host: "gw.test", path: "/host"}, status: 301, location: "http://other.test/host"},
		{name: "port", l: plain, in: testHead{host: "gw.test", path: "/port"}, status: 302, location: "http://gw.test:8443/port"},
		{name: "https and 443", l: plain, in: testHead{host: "gw.test", path: "/scheme-port"}, status: 302, location: "https://gw.test/scheme-port"},
		{name: "TLS listener keeps https", l: secure, in: testHead{host: "gw.test", path: "/host"}, status: 301, location: "https://other.test/host"},
		{name: "full path, query kept", l: plain, in: testHead{host: "gw.test", path: "/full/x", query: "a=b"}, status: 308, location: "http://gw.test/new?a=b"},
		{name: "prefix", l: plain, in: testHead{host: "gw.test", path: "/pre/x/y"}, status: 303, location: "http://gw.test/post/x/y"},
		{name: "prefix alone", l: plain, in: testHead{host: "gw.test", path: "/pre"}, status: 303, location: "http://gw.test/post"},
	})
}

// TestGatewayRewrite: the URLRewrite filter changes the Host and path
// sent, the query kept; a backendRef that could not be resolved answers
// 500 and a Gateway API wildcard matches at any depth.
func TestGatewayRewrite(t *testing.T) {
	t.Parallel()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(gatewayTable())
	l := p.Listener(ListenerOptions{})
	for _, tc := range []struct {
		name         string
		in           testHead
		target, host string
		status       int
	}{
		{name: "host", in: testHead{host: "gw.test", path: "/rw-host/a"}, host: "internal.test"},
		{name: "strip the prefix", in: testHead{host: "gw.test", path: "/strip/a/b", query: "x=1"}, target: "/a/b?x=1"},
		{name: "strip the whole path", in: testHead{host: "gw.test", path: "/strip"}, target: "/"},
		{name: "strip with a trailing slash", in: testHead{host: "gw.test", path: "/strip/"}, target: "/"},
		{name: "full path", in: testHead{host: "gw.test", path: "/full-rw/deeper"}, target: "/one"},
		{name: "unresolved backendRef", in: testHead{host: "gw.test", path: "/unresolved"}, status: 500},
		{name: "wildcard two labels down", in: testHead{host: "a.b.deep.test", path: "/"}},
		{name: "an Ingress wildcard matches one label", in: testHead{host: "a.b.shallow.test", path: "/"}, status: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := &Exchange{In: &tc.in}
			l.Decide(x)
			if x.Reply.Status != tc.status {
				t.Fatalf("status %d, want %d (%s)", x.Reply.Status, tc.status, x.Reply.Reason)
			}
			if tc.status != 0 {
				return
			}
			if x.Endpoint == nil {
				t.Fatal("no endpoint picked")
			}
			if x.Target != tc.target || x.UpstreamHost != tc.host {
				t.Errorf("target %q host %q, want %q %q", x.Target, x.UpstreamHost, tc.target, tc.host)
			}
		})
	}
}

// TestGatewayListenerTable: a listener of a Gateway with an address of
// its own decides from that listener's table only: the main table's
// hosts are not served there, nor another listener's; a listener the
// table does not have answers 404. Endpoint patches reach the listener
// tables too.
func TestGatewayListenerTable(t *testing.T) {
	t.Parallel()
	web := &route.Backend{Key: "ns/web:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	api := &route.Backend{Key: "ns/api:80", Endpoints: []route.Endpoint{{Address: "192.0.2.20:80"}}}
	host := func(be *route.Backend) *route.Table {
		return route.NewTable([]*route.VirtualHost{route.NewVirtualHost("app.test", []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(be)},
		})}, nil)
	}
	main := route.NewTable([]*route.VirtualHost{route.NewVirtualHost("ingress.test", []*route.Route{
		{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web)},
	})}, nil).WithListeners([]*route.Listener{
		{Address: "203.0.113.1:80", Table: host(web)},
		{Address: "203.0.113.2:80", Table: host(api)},
	})
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(main)
	own, one, two := p.Listener(ListenerOptions{}), p.Listener(ListenerOptions{Table: "203.0.113.1:80"}), p.Listener(ListenerOptions{Table: "203.0.113.2:80"})
	gone := p.Listener(ListenerOptions{Table: "203.0.113.3:80"})
	decide := func(l *Listener, h string) (int, string) {
		x := &Exchange{In: &testHead{host: h, path: "/"}}
		l.Decide(x)
		if x.Endpoint == nil {
			return x.Reply.Status, ""
		}
		return x.Reply.Status, x.Endpoint.Address
	}
	for _, tc := range []struct {
		name   string
		l      *Listener
		host   string
		status int
		ep     string
	}{
		{"Postern's own listener: the Ingress host", own, "ingress.test", 0, "192.0.2.10:80"},
		{"Postern's own listener: not a Gateway's host", own, "app.test", 404, ""},
		{"one Gateway", one, "app.test", 0, "192.0.2.10:80"},
		{"the other Gateway, same host", two, "app.test", 0, "192.0.2.20:80"},
		{"a Gateway's listener: not the Ingress host", one, "ingress.test", 404, ""},
		{"a listener the table has not", gone, "app.test", 404, ""},
	} {
		if status, ep := decide(tc.l, tc.host); status != tc.status || ep != tc.ep {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, ep, tc.status, tc.ep)
		}
	}

	// An endpoint change of api, patched: the second Gateway follows.
	api2 := *api
	api2.Endpoints = []route.Endpoint{{Address: "192.0.2.21:80"}}
	patched := p.Table().WithBackends(map[*route.Backend]*route.Backend{api: &api2})
	if len(patched.Patch().Routes) != 1 {
		t.Fatalf("the patch replaced %d routes, want the listener's one", len(patched.Patch().Routes))
	}
	p.Swap(patched)
	if _, ep := decide(two, "app.test"); ep != "192.0.2.21:80" {
		t.Errorf("after the patch the Gateway's listener picks %q, want 192.0.2.21:80", ep)
	}
	if _, ep := decide(one, "app.test"); ep != "192.0.2.10:80" {
		t.Errorf("after the patch the other listener picks %q, want 192.0.2.10:80", ep)
	}
}
