package proxy

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// CORS on every engine: a preflight from an allowed origin is answered
// 204 by the proxy and never reaches the endpoint; a GET gets the origin
// echoed, replacing what the endpoint sent; another origin gets nothing
// and an OPTIONS of its is proxied.
func TestCORSOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "https://backend.test")
			w.WriteHeader(http.StatusOK)
		})
		pol := &route.Policy{CORS: &route.CORS{
			AllowOrigins:     []string{"https://*.app.test", "https://app.test:8443"},
			AllowMethods:     "GET, POST",
			AllowHeaders:     "Content-Type",
			ExposeHeaders:    "X-Total",
			AllowCredentials: true,
			MaxAge:           600,
		}}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", &route.Route{
			Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(backendOf("b", "", b)),
		})}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		send := func(method, origin string) reply {
			t.Helper()
			req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+"/api", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.test"
			req.Header.Set("Origin", origin)
			resp, _ := do(t, c, req)
			return resp
		}

		resp := send(http.MethodOptions, "https://www.app.test")
		if resp.StatusCode != http.StatusNoContent || b.hits.Load() != 0 {
			t.Fatalf("preflight: %d, backend hits %d; want 204 from the proxy", resp.StatusCode, b.hits.Load())
		}
		want := map[string]string{
			"Access-Control-Allow-Origin":      "https://www.app.test",
			"Access-Control-Allow-Methods":     "GET, POST",
			"Access-Control-Allow-Headers":     "Content-Type",
			"Access-Control-Expose-Headers":    "X-Total",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Max-Age":           "600",
			"Content-Type":                     "text/plain charset=UTF-8",
		}
		for name, v := range want {
			if got := resp.Header.Get(name); got != v {
				t.Errorf("preflight %s %q, want %q", name, got, v)
			}
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != "0" {
			t.Errorf("preflight Content-Length %q", cl)
		}

		resp = send(http.MethodGet, "https://app.test:8443")
		if got := resp.Header.Values("Access-Control-Allow-Origin"); resp.StatusCode != http.StatusOK || len(got) != 1 || got[0] != "https://app.test:8443" {
			t.Errorf("GET: %d with Access-Control-Allow-Origin %q, want 200 with the origin alone", resp.StatusCode, got)
		}

		resp = send(http.MethodOptions, "https://evil.test")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://backend.test" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("OPTIONS from another origin: %d %v, want the endpoint's answer untouched", resp.StatusCode, resp.Header)
		}
		if b.hits.Load() != 2 {
			t.Errorf("backend hits %d, want 2", b.hits.Load())
		}
		if e.fast() && served(s) != 3 {
			t.Errorf("the fast path decided %d requests, want all 3", served(s))
		}
	})
}
