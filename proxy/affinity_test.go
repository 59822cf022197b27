package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// TestAffinityOnEveryEngine: with cookie affinity over three real
// backends, a client's first response carries the session cookie and
// every later request with it reaches the same backend, on both engines,
// decided by the fast path; clients without the cookie are spread.
func TestAffinityOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		bs := []*testBackend{newBackend(t, "b1", nil), newBackend(t, "b2", nil), newBackend(t, "b3", nil)}
		rt := prefix("/", backendOf("web", "", bs...))
		rt.Policy = &route.Policy{Affinity: &route.Affinity{Mode: route.AffinityBalanced, CookieName: "INGRESSCOOKIE", CookiePath: "/"}}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", rt)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		seen := map[string]bool{}
		const clients = 30
		for range clients {
			resp, body := get(t, c, addr, "app.test", "/x")
			set := resp.Header.Get("Set-Cookie")
			if !strings.HasPrefix(set, "INGRESSCOOKIE=") || !strings.HasSuffix(set, "; Path=/; HttpOnly") {
				t.Fatalf("first response: Set-Cookie %q", set)
			}
			first, _, _ := strings.Cut(body, " ")
			seen[first] = true
			pair, _, _ := strings.Cut(set, ";")
			for range 3 {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "app.test"
				req.Header.Set("Cookie", pair)
				resp, body := do(t, c, req)
				if got, _, _ := strings.Cut(body, " "); got != first || resp.Header.Get("Set-Cookie") != "" {
					t.Fatalf("with the cookie: %s (Set-Cookie %q), want %s and no new cookie", got, resp.Header.Get("Set-Cookie"), first)
				}
			}
		}
		if len(seen) < 2 {
			t.Errorf("%d clients all went to %v", clients, seen)
		}
		if e.fast() && served(s) != clients*4 {
			t.Errorf("the fast path decided %d requests, want %d", served(s), clients*4)
		}
	})
}
