package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// custom-http-errors and default-backend on every engine (ingress-nginx's
// e2e customhttperrors.go, disableproxyintercepterrors.go and
// default_backend.go): an endpoint's 404 is replaced by the error
// backend's answer to "/" with the X-Code fields; a request that finds no
// endpoint goes there with X-Code 503; without interception the 404
// passes; a request with a body is not sent again.
func TestErrorPagesOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		app := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/missing") {
				w.Header().Set("X-App", "1")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, "app's own 404")
				return
			}
			fmt.Fprint(w, "app")
		})
		errs := newBackend(t, "errors", func(w http.ResponseWriter, r *http.Request) {
			var b strings.Builder
			for _, h := range []string{"X-Code", "X-Format", "X-Original-Uri", "X-Namespace", "X-Ingress-Name", "X-Service-Name", "X-Service-Port"} {
				fmt.Fprintf(&b, "%s=%s\n", strings.ToLower(h), r.Header.Get(h))
			}
			fmt.Fprintf(&b, "path=%s host=%s id=%t", r.URL.RequestURI(), r.Host, r.Header.Get("X-Request-Id") != "")
			fmt.Fprint(w, b.String())
		})
		errBe := backendOf("errors", "", errs)
		route1 := func(path string, main *route.Backend, intercept bool) *route.Route {
			return &route.Route{
				Match:    route.Match{PathType: route.PathPrefix, Path: path},
				Source:   route.Source{Namespace: "shop", Name: "web"},
				Policy:   &route.Policy{ErrorPages: &route.ErrorPages{Codes: []int{404, 503}, Intercept: intercept}},
				Backends: []route.WeightedBackend{{Backend: main, Weight: 1}, {Backend: errBe, ErrorPage: true}},
			}
		}
		empty := &route.Backend{Key: "ns/empty:80", Namespace: "ns", Service: "empty", Port: "80"}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test",
			route1("/", backendOf("app", "", app), true),
			route1("/passthrough", backendOf("app", "", app), false),
			route1("/none", empty, true),
		)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		send := func(method, path, body string) (reply, string) {
			t.Helper()
			var rd *strings.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, nil)
			if rd != nil {
				req, err = http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, rd)
			}
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.test"
			req.Header.Set("Accept", "application/json")
			return do(t, c, req)
		}

		resp, body := send(http.MethodGet, "/missing/page?x=1", "")
		want := "x-code=404\nx-format=application/json\nx-original-uri=/missing/page?x=1\nx-namespace=shop\nx-ingress-name=web\nx-service-name=app\nx-service-port=80\npath=/ host=app.test id=true"
		if resp.StatusCode != http.StatusOK || body != want || resp.Header.Get("X-App") != "" {
			t.Errorf("intercepted 404: %d %q (X-App %q), want 200 %q", resp.StatusCode, body, resp.Header.Get("X-App"), want)
		}
		if resp, body := send(http.MethodGet, "/ok", ""); resp.StatusCode != http.StatusOK || body != "app" {
			t.Errorf("a 200 of the app: %d %q", resp.StatusCode, body)
		}
		resp, body = send(http.MethodGet, "/none", "")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "x-code=503\n") || !strings.Contains(body, "x-service-name=empty") {
			t.Errorf("no endpoint: %d %q, want the error backend's answer with X-Code 503", resp.StatusCode, body)
		}
		if resp, body := send(http.MethodGet, "/passthrough/missing", ""); resp.StatusCode != http.StatusNotFound || body != "" && body != "app's own 404" {
			t.Errorf("without interception: %d %q, want the app's 404", resp.StatusCode, body)
		}
		if resp, body := send(http.MethodPost, "/missing", "data"); resp.StatusCode != http.StatusNotFound || body != "app's own 404" {
			t.Errorf("a request with a body: %d %q, want the app's 404 (its body is not sent again)", resp.StatusCode, body)
		}
		// The connection to the endpoint whose answer was dropped is not
		// reused half-read: the next requests are answered as usual.
		for range 3 {
			if resp, body := send(http.MethodGet, "/ok", ""); resp.StatusCode != http.StatusOK || body != "app" {
				t.Fatalf("after an interception: %d %q", resp.StatusCode, body)
			}
		}
	})
}
