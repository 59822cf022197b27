package proxy

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// TestRedirectsOnEveryEngine sends the requests of ingress-nginx's
// redirect cases (permanent-redirect with a literal URL, with
// $request_uri, with a path made absolute or kept relative; app-root;
// from-to-www-redirect; ssl-redirect on a TLS host, off on one of its
// routes; force-ssl-redirect without TLS) through each engine: each gets
// its status and Location, the backend gets only the request not
// redirected, and the fast path decides them all.
func TestRedirectsOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		be := backendOf("b", "", b)
		at := func(path string, pol *route.Policy) *route.Route {
			r := prefix(path, be)
			r.Policy = pol
			return r
		}
		to := func(url string, relative bool) *route.Policy {
			return &route.Policy{Redirect: &route.Redirect{Code: 301, URL: route.MustTemplate(url, false), Relative: relative}}
		}
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("r.test",
				at("/something", to("http://redirect.example.com", false)),
				at("/vars", to("https://new.example.com$request_uri", false)),
				at("/path", to("/new-location", false)),
				at("/relative", to("/new-location", true))),
			vhost("approot.test", at("/", &route.Policy{AppRoot: "/foo"})),
			vhost("www.h.test", at("/", &route.Policy{HostRedirect: &route.HostRedirect{Host: "h.test"}})),
			vhost("tls.test", at("/", nil), at("/off", &route.Policy{SSLRedirect: route.SSLRedirectOff})),
			vhost("force.test", at("/", &route.Policy{SSLRedirect: route.SSLRedirectForce})),
		}, nil).WithTLS([]*route.TLSHost{{Host: "tls.test", Redirect: true}})
		h := New(Options{})
		h.Swap(tbl)
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{HTTPSPort: 8443})
		c := newClient(t)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		cases := []struct {
			host, target string
			status       int
			location     string
		}{
			{"r.test", "/something/else?a=1", 301, "http://redirect.example.com"},
			{"r.test", "/vars/a?b=1", 301, "https://new.example.com/vars/a?b=1"},
			{"r.test:8080", "/path", 301, "http://r.test/new-location"},
			{"r.test", "/relative", 301, "/new-location"},
			{"approot.test", "/", 302, "http://approot.test/foo"},
			{"www.h.test", "/foo/", 308, "http://h.test:80/foo"},
			{"tls.test", "/a/", 308, "https://tls.test:8443/a/"},
			{"force.test", "/", 308, "https://force.test:8443/"},
		}
		for _, tt := range cases {
			resp, body := get(t, c, addr, tt.host, tt.target)
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("%s%s: %d Location %q, want %d %q", tt.host, tt.target, resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
			}
			if want := pipeline.ErrorBody(tt.status); body != want || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("%s%s: body %q (%s), want %q as plain text", tt.host, tt.target, body, resp.Header.Get("Content-Type"), want)
			}
		}
		if n := b.hits.Load(); n != 0 {
			t.Fatalf("the backend got %d redirected requests, want 0", n)
		}
		if resp, body := get(t, c, addr, "tls.test", "/off/x"); resp.StatusCode != http.StatusOK || b.hits.Load() != 1 {
			t.Errorf("a route with ssl-redirect off: %d %q, backend hits %d; want 200 and 1", resp.StatusCode, body, b.hits.Load())
		}
		if want := int64(len(cases) + 1); e.fast() && served(s) != want {
			t.Errorf("the fast path decided %d requests, want all %d", served(s), want)
		}
	})
}
