package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// mirror-target on every engine: each forwarded request is copied to the
// mirror with its method, URI (the template's), fields, Host and body; a
// mirror that does not answer never slows the client; a redirect the
// route answers itself is not copied.
func TestMirrorOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		type copyOf struct{ method, uri, host, user, body string }
		got := make(chan copyOf, 16)
		stall := make(chan struct{})
		mirror := newBackend(t, "mirror", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- copyOf{r.Method, r.RequestURI, r.Host, r.Header.Get("X-User"), string(b)}
			if strings.HasPrefix(r.RequestURI, "/copy/slow") {
				<-stall // never answers while the test runs
			}
		})
		// Registered after the mirror's Close, so run before it: the
		// stalled handlers return first.
		t.Cleanup(func() { close(stall) })
		app := newBackend(t, "app", nil)
		pol := &route.Policy{Mirror: &route.Mirror{Target: route.MustTemplate("http://"+mirror.addr()+"/copy$request_uri", false), Host: "shadow.test", Body: true}}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test",
			&route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(backendOf("app", "", app))},
		)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		send := func(method, path, body string) reply {
			t.Helper()
			req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body == "" {
				req.Body = http.NoBody
			}
			req.Host = "app.test"
			req.Header.Set("X-User", "u1")
			resp, _ := do(t, c, req)
			return resp
		}
		wait := func() copyOf {
			t.Helper()
			select {
			case cp := <-got:
				return cp
			case <-time.After(testTimeout):
				t.Fatal("no copy reached the mirror")
			}
			return copyOf{}
		}
		if resp := send(http.MethodGet, "/a?b=1", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d", resp.StatusCode)
		}
		if cp := wait(); cp != (copyOf{"GET", "/copy/a?b=1", "shadow.test", "u1", ""}) {
			t.Errorf("copy of a GET: %+v", cp)
		}
		if resp := send(http.MethodPost, "/form", "name=x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		if cp := wait(); cp != (copyOf{"POST", "/copy/form", "shadow.test", "u1", "name=x"}) {
			t.Errorf("copy of a POST: %+v", cp)
		}
		if got := app.lastRequest(); got.URL.Path != "/form" {
			t.Errorf("the app saw %s", got.URL.Path)
		}
		// A mirror that never answers: the clients' requests go on.
		start := time.Now()
		for range 5 {
			if resp := send(http.MethodGet, "/slow", ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET with a stalled mirror: %d", resp.StatusCode)
			}
		}
		if d := time.Since(start); d > testTimeout/2 {
			t.Errorf("5 requests took %v with a stalled mirror", d)
		}
	})
}

// Mirror backends (a Gateway API RequestMirror filter) on every engine:
// every mirror backend of a route gets a copy of its share of the
// forwarded requests, at an endpoint of its own, with the request's URI,
// Host and body; the client is answered by the route's backend alone.
func TestMirrorBackendsOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		type copyOf struct{ name, uri, host, body string }
		got := make(chan copyOf, 256)
		mirrorOf := func(name string) *testBackend {
			return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- copyOf{name, r.RequestURI, r.Host, string(b)}
			})
		}
		one, two, never := mirrorOf("one"), mirrorOf("two"), mirrorOf("never")
		app := newBackend(t, "app", nil)
		mirror := func(b *testBackend, num, den int32) route.WeightedBackend {
			return route.WeightedBackend{Backend: backendOf(b.name, "", b), Weight: 0, Mirror: &route.MirrorShare{Numerator: num, Denominator: den}}
		}
		backends := []route.WeightedBackend{{Backend: backendOf("app", "", app), Weight: 1}, mirror(one, 1, 1), mirror(two, 100, 100), mirror(never, 0, 100)}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test",
			&route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: backends},
		)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/m?x=1", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "app.test"
		resp, body := do(t, newClient(t), req)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "app" {
			t.Fatalf("answered %d by %q (%q), want 200 by app", resp.StatusCode, resp.Header.Get("X-Backend"), body)
		}
		seen := map[string]copyOf{}
		for len(seen) < 2 {
			select {
			case cp := <-got:
				seen[cp.name] = cp
			case <-time.After(testTimeout):
				t.Fatalf("copies %+v, want one at each of one and two", seen)
			}
		}
		for _, name := range []string{"one", "two"} {
			if cp := seen[name]; cp != (copyOf{name, "/m?x=1", "app.test", "payload"}) {
				t.Errorf("copy at %s: %+v", name, cp)
			}
		}
		select {
		case cp := <-got:
			t.Errorf("a copy of a share of 0 or a second one: %+v", cp)
		case <-time.After(100 * time.Millisecond):
		}
	})
}
