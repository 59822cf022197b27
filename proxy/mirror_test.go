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
