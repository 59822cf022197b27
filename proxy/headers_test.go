package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// TestHeaderEditsOnEveryEngine: a route's request header edits reach the
// endpoint (a variable expanded, a Set replacing what the client sent, a
// remove), its response header edits reach the client on proxied
// responses and on the route's own answers (a 413), and the endpoint's
// Location, Refresh and Set-Cookie are rewritten as nginx's
// proxy_redirect and proxy_cookie_* rewrite them, on both engines, all
// decided by the fast path.
func TestHeaderEditsOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Location", "http://internal:8080/app/next")
			h.Set("Refresh", "5; URL=http://internal:8080/app/later")
			h.Add("Set-Cookie", "s=1; Domain=.Internal.Local; Path=/app/x; HttpOnly")
			h.Add("Set-Cookie", "t=2; Path=/other")
			h.Set("X-Powered-By", "php")
			h.Set("Server", "backend")
			w.WriteHeader(http.StatusOK)
		})
		edits := func(es ...route.HeaderEdit) *route.HeaderEdits { he := route.HeaderEdits(es); return &he }
		pol := &route.Policy{
			RequestHeaders: edits(
				route.HeaderEdit{Op: route.HeaderSet, Name: "X-Client", Value: route.MustTemplate("$remote_addr", false)},
				route.HeaderEdit{Op: route.HeaderSet, Name: "X-Env", Value: route.MustTemplate("prod", false)},
				route.HeaderEdit{Op: route.HeaderAdd, Name: "X-Tag", Value: route.MustTemplate("b", false)},
				route.HeaderEdit{Op: route.HeaderRemove, Name: "X-Debug"},
			),
			ResponseHeaders: edits(
				route.HeaderEdit{Op: route.HeaderSet, Name: "X-Frame-Options", Value: route.MustTemplate("DENY", false)},
				route.HeaderEdit{Op: route.HeaderRemove, Name: "X-Powered-By"},
			),
			ResponseRewrite: &route.ResponseRewrite{
				RedirectFrom: "http://internal:8080/app/", RedirectTo: "https://app.test/",
				CookieDomainFrom: "internal.local", CookieDomainTo: "app.test",
				CookiePathFrom: "/app/", CookiePathTo: "/",
			},
			MaxBodySize: 10,
		}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", &route.Route{
			Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(backendOf("b", "", b)),
		})}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/a", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "app.test"
		req.Header.Set("X-Env", "dev")
		req.Header.Set("X-Tag", "a")
		req.Header.Set("X-Debug", "1")
		resp, _ := do(t, c, req)
		last := b.lastRequest()
		if got := last.Header.Get("X-Client"); got != "127.0.0.1" {
			t.Errorf("X-Client %q, want the client address", got)
		}
		if got := last.Header.Values("X-Env"); !slices.Equal(got, []string{"prod"}) {
			t.Errorf("X-Env %q, want the route's value only", got)
		}
		if got := last.Header.Values("X-Tag"); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("X-Tag %q, want the client's and the route's", got)
		}
		if got := last.Header.Values("X-Debug"); len(got) != 0 {
			t.Errorf("X-Debug %q reached the backend", got)
		}
		want := map[string][]string{
			"Location":        {"https://app.test/next"},
			"Refresh":         {"5; URL=https://app.test/later"},
			"Set-Cookie":      {"s=1; Domain=.app.test; Path=/x; HttpOnly", "t=2; Path=/other"},
			"X-Frame-Options": {"DENY"},
			"X-Powered-By":    nil,
			"Server":          {"backend"},
		}
		for name, v := range want {
			if got := resp.Header.Values(name); !slices.Equal(got, v) {
				t.Errorf("%s %q, want %q", name, got, v)
			}
		}

		// The route's own answer gets the response edits, and is not
		// rewritten.
		req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/a", strings.NewReader(strings.Repeat("x", 100)))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "app.test"
		resp, _ = do(t, c, req)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("over the body limit: %d with X-Frame-Options %q, want 413 with DENY", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
		}
		if e.fast() && served(s) != 2 {
			t.Errorf("the fast path decided %d requests, want both", served(s))
		}
	})
}
