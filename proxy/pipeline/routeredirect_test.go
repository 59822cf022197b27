package pipeline

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// redirectTable has a route for each redirect of ingress-nginx's cases
// (reference §2.2, §5 items 11-14) on r.test, app-root on approot.test,
// the from-to-www routes of www.fromtowww.test, a path redirect for any
// host (a request without Host), and tls.test (spec.tls,
// redirect on) whose routes have a permanent redirect, an app-root, a
// rewrite to an absolute URL and one to a path.
func redirectTable() *route.Table {
	web := &route.Backend{Key: "ns/web:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	at := func(path string, pol *route.Policy) *route.Route {
		return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Policy: pol, Backends: route.Single(web)}
	}
	to := func(code int, url string, relative bool) *route.Policy {
		return &route.Policy{Redirect: &route.Redirect{Code: code, URL: route.MustTemplate(url, false), Relative: relative}}
	}
	www := &route.Policy{HostRedirect: &route.HostRedirect{Host: "fromtowww.test"}}
	return route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("r.test", []*route.Route{
			at("/", nil),
			at("/something", to(301, "http://redirect.example.com", false)),
			at("/code", to(302, "http://redirect.example.com", false)),
			at("/zero", to(0, "http://redirect.example.com/z", false)),
			at("/vars", to(301, "https://new.example.com$request_uri", false)),
			at("/path", to(301, "/new-location", false)),
			at("/relative", to(301, "/new-location", true)),
			at("/path-vars", to(307, "/to$uri", false)),
			at("/scheme", to(308, "$scheme://other.test$uri$is_args$args", false)),
		}),
		route.NewVirtualHost("approot.test", []*route.Route{at("/", &route.Policy{AppRoot: "/foo"})}),
		route.NewVirtualHost("www.fromtowww.test", []*route.Route{at("/", www)}),
		route.NewVirtualHost("www.code.test", []*route.Route{at("/", &route.Policy{HostRedirect: &route.HostRedirect{Host: "code.test", Code: 301}})}),
		route.NewVirtualHost("tls.test", []*route.Route{
			at("/", &route.Policy{AppRoot: "/app"}),
			at("/moved", to(301, "https://moved.test/", false)),
			at("/away", &route.Policy{Rewrite: &route.Rewrite{Target: route.MustTemplate("https://away.test/", true)}}),
			at("/inside", &route.Policy{Rewrite: &route.Rewrite{Target: route.MustTemplate("/elsewhere", true)}}),
		}),
		route.NewVirtualHost("", []*route.Route{at("/path", to(301, "/new-location", false))}),
		route.NewVirtualHost("www.tls.test", []*route.Route{at("/", &route.Policy{HostRedirect: &route.HostRedirect{Host: "tls.test"}})}),
	}, nil).WithTLS([]*route.TLSHost{{Host: "tls.test", Redirect: true}, {Host: "www.tls.test", Redirect: true}})
}

func redirectListeners(t *testing.T) (plain, secure *Listener) {
	t.Helper()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(redirectTable())
	return p.Listener(ListenerOptions{HTTPSPort: 8443}), p.Listener(ListenerOptions{Secure: true})
}

// TestRedirect: permanent-redirect and temporal-redirect answer every
// request of their route with their code and URL, verbatim, a path made
// absolute unless relative-redirects.
func TestRedirect(t *testing.T) {
	t.Parallel()
	plain, secure := redirectListeners(t)
	runRedirectCases(t, []redirectCase{
		{name: "standard code, URL verbatim", l: plain, in: testHead{host: "r.test", path: "/something"}, status: 301, location: "http://redirect.example.com"},
		{name: "path and query not appended", l: plain, in: testHead{host: "r.test", path: "/something/deeper", query: "a=1"}, status: 301, location: "http://redirect.example.com"},
		{name: "custom code", l: plain, in: testHead{host: "r.test", path: "/code"}, status: 302, location: "http://redirect.example.com"},
		{name: "no code: 302", l: plain, in: testHead{host: "r.test", path: "/zero"}, status: 302, location: "http://redirect.example.com/z"},
		{name: "$request_uri", l: plain, in: testHead{host: "r.test", path: "/vars/a", query: "b=1"}, status: 301, location: "https://new.example.com/vars/a?b=1"},
		{name: "a path made absolute", l: plain, in: testHead{host: "r.test", path: "/path"}, status: 301, location: "http://r.test/new-location"},
		{name: "a path made absolute, no port", l: plain, in: testHead{host: "R.Test:8080", path: "/path"}, status: 301, location: "http://r.test/new-location"},
		{name: "a path made absolute over TLS", l: secure, in: testHead{host: "r.test", path: "/path"}, status: 301, location: "https://r.test/new-location"},
		{name: "relative-redirects", l: plain, in: testHead{host: "r.test", path: "/relative"}, status: 301, location: "/new-location"},
		{name: "a path with variables", l: plain, in: testHead{host: "r.test", path: "/path-vars/x"}, status: 307, location: "http://r.test/to/path-vars/x"},
		{name: "absolute with variables", l: secure, in: testHead{host: "r.test", path: "/scheme", query: "q=2"}, status: 308, location: "https://other.test/scheme?q=2"},
		{name: "no Host: the path stays relative", l: plain, in: testHead{path: "/path"}, status: 301, location: "/new-location"},
		{name: "a decoded CR never reaches the head", l: plain, in: testHead{host: "r.test", path: "/path-vars/\r\nX: y"}, status: 400},
		{name: "other routes forwarded", l: plain, in: testHead{host: "r.test", path: "/else"}},
	})
}

// TestAppRoot: app-root answers a request for "/" only, 302 to the Host
// as sent, port and case kept, the query dropped; before the host's
// redirect to HTTPS.
func TestAppRoot(t *testing.T) {
	t.Parallel()
	plain, secure := redirectListeners(t)
	runRedirectCases(t, []redirectCase{
		{name: "/", l: plain, in: testHead{host: "approot.test"}, status: 302, location: "http://approot.test/foo"},
		{name: "/ with a query", l: plain, in: testHead{host: "approot.test", query: "a=1"}, status: 302, location: "http://approot.test/foo"},
		{name: "the Host as sent", l: plain, in: testHead{host: "AppRoot.test:8080"}, status: 302, location: "http://AppRoot.test:8080/foo"},
		{name: "over TLS", l: secure, in: testHead{host: "approot.test"}, status: 302, location: "https://approot.test/foo"},
		{name: "// is / once normalised", l: plain, in: testHead{host: "approot.test", path: "//"}, status: 302, location: "http://approot.test/foo"},
		{name: "another path", l: plain, in: testHead{host: "approot.test", path: "/bar"}},
		{name: "the app root itself", l: plain, in: testHead{host: "approot.test", path: "/foo"}},
		{name: "before the redirect to HTTPS", l: plain, in: testHead{host: "tls.test"}, status: 302, location: "http://tls.test/app"},
		{name: "other paths of a TLS host", l: plain, in: testHead{host: "tls.test", path: "/x"}, status: 308, location: "https://tls.test:8443/x"},
	})
}

// TestHostRedirect: the from-to-www routes answer 308 (or their code) to
// the other host with the port the client reached and the request URI
// without a trailing slash.
func TestHostRedirect(t *testing.T) {
	t.Parallel()
	plain, secure := redirectListeners(t)
	runRedirectCases(t, []redirectCase{
		{name: "HTTP", l: plain, in: testHead{host: "www.fromtowww.test", path: "/foo"}, status: 308, location: "http://fromtowww.test:80/foo"},
		{name: "HTTPS", l: secure, in: testHead{host: "www.fromtowww.test"}, status: 308, location: "https://fromtowww.test:443"},
		{name: "trailing slash dropped", l: plain, in: testHead{host: "www.fromtowww.test", path: "/foo/"}, status: 308, location: "http://fromtowww.test:80/foo"},
		{name: "query kept", l: plain, in: testHead{host: "www.fromtowww.test", path: "/foo/", query: "a=1"}, status: 308, location: "http://fromtowww.test:80/foo/?a=1"},
		{name: "the Host's port", l: plain, in: testHead{host: "WWW.fromtowww.test:8080", path: "/foo"}, status: 308, location: "http://fromtowww.test:8080/foo"},
		{name: "the route's code", l: plain, in: testHead{host: "www.code.test", path: "/a"}, status: 301, location: "http://code.test:80/a"},
		{name: "before the redirect to HTTPS", l: plain, in: testHead{host: "www.tls.test", path: "/a"}, status: 308, location: "http://tls.test:80/a"},
	})
}

// TestRedirectOrder: on a host whose plain HTTP requests go to HTTPS,
// what ingress-nginx's rewrite phase does first wins: the permanent
// redirect and an absolute rewrite; a rewritten request is redirected
// with the URI it came with.
func TestRedirectOrder(t *testing.T) {
	t.Parallel()
	plain, _ := redirectListeners(t)
	runRedirectCases(t, []redirectCase{
		{name: "permanent-redirect wins", l: plain, in: testHead{host: "tls.test", path: "/moved"}, status: 301, location: "https://moved.test/"},
		{name: "an absolute rewrite wins", l: plain, in: testHead{host: "tls.test", path: "/away"}, status: 302, location: "https://away.test/"},
		{name: "rewritten, then redirected", l: plain, in: testHead{host: "tls.test", path: "/inside/a"}, status: 308, location: "https://tls.test:8443/inside/a"},
	})
}

// TestRedirectReply: a redirect is answered like the proxy's other local
// answers, plain text, with the reason phrase as its body.
func TestRedirectReply(t *testing.T) {
	t.Parallel()
	plain, _ := redirectListeners(t)
	for _, in := range []testHead{{host: "r.test", path: "/something"}, {host: "r.test", path: "/vars"}, {host: "approot.test"}} {
		x := decide(plain, &in, nil)
		if ct := editedValuesOf(x.Reply.Fields, "Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("%s%s: Content-Type %q", in.host, in.Path(), ct)
		}
		if want := ErrorBody(x.Reply.Status); x.Reply.Body != want || want == "\n" {
			t.Errorf("%s%s: body %q, want %q", in.host, in.Path(), x.Reply.Body, want)
		}
	}
	if r := redirectReply(http.StatusNotModified, "/x", ""); r.Body != "" {
		t.Errorf("304 with a body %q", r.Body)
	}
}

func TestHostPort(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"a.test": "", "a.test:8080": "8080", "a.test:": "", "a.test:http": "", "[::1]": "", "[::1]:81": "81", "a.test:123456": "",
	} {
		if got := hostPort(host); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", host, got, want)
		}
	}
}

// BenchmarkRedirect is the decision of a permanent redirect: a literal
// URL (its answer made once, when the table is swapped in), a path made
// absolute, and $request_uri.
func BenchmarkRedirect(b *testing.B) {
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(redirectTable())
	l := p.Listener(ListenerOptions{})
	for _, bc := range []struct{ name, path, want string }{
		{"literal", "/something", "http://redirect.example.com"},
		{"path", "/path", "http://r.test/new-location"},
		{"request_uri", "/vars/items/42", "https://new.example.com/vars/items/42"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := &testHead{host: "r.test", path: bc.path, header: http.Header{}}
			var x Exchange
			b.ReportAllocs()
			for b.Loop() {
				x.Reset()
				x.In, x.PeerIP = in, "198.51.100.7"
				l.Decide(&x)
			}
			if got := editedValuesOf(x.Reply.Fields, "Location"); got != bc.want {
				b.Fatalf("Location %q, want %q", got, bc.want)
			}
		})
	}
}
