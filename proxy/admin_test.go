package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-dev/postern/proxy/route"
)

func TestAdminHandler(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_test_total", Help: "A test counter."}))
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{
		vhost("app.example.com", prefix("/api", &route.Backend{Key: "ns/api:80", Namespace: "ns", Service: "api", Port: "80",
			Endpoints: []route.Endpoint{{Address: "10.0.0.1:8080"}}})),
	}, nil))
	admin := NewAdminHandler(AdminOptions{Ready: ready.Load, Table: h.Table, Registry: reg})

	serve := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
		return rec
	}

	if rec := serve(http.MethodGet, "/healthz"); rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("/healthz = %d %q", rec.Code, rec.Body)
	}
	if rec := serve(http.MethodGet, "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", rec.Code)
	}
	ready.Store(true)
	if rec := serve(http.MethodGet, "/readyz"); rec.Code != http.StatusOK {
		t.Errorf("/readyz when ready = %d, want 200", rec.Code)
	}
	ready.Store(false)
	if rec := serve(http.MethodHead, "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("HEAD /readyz after draining = %d, want 503", rec.Code)
	}

	rec := serve(http.MethodGet, "/debug/routes")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/debug/routes = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	var tbl route.Table
	if err := json.Unmarshal(rec.Body.Bytes(), &tbl); err != nil {
		t.Fatalf("/debug/routes is not JSON: %v\n%s", err, rec.Body)
	}
	if len(tbl.VirtualHosts) != 1 || tbl.VirtualHosts[0].Host != "app.example.com" ||
		tbl.VirtualHosts[0].Routes[0].Path != "/api" || tbl.VirtualHosts[0].Routes[0].First().Endpoints[0].Address != "10.0.0.1:8080" {
		t.Errorf("/debug/routes does not show the live table:\n%s", rec.Body)
	}
	if !strings.Contains(rec.Body.String(), "\n  ") {
		t.Error("/debug/routes is not indented")
	}

	if rec := serve(http.MethodGet, "/metrics"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "postern_test_total 0") {
		t.Errorf("/metrics = %d\n%s", rec.Code, rec.Body)
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := serve(m, "/healthz")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /healthz = %d Allow %q, want 405 GET, HEAD", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	if rec := serve(http.MethodGet, "/nothing"); rec.Code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", rec.Code)
	}
}

func TestAdminHandlerOff(t *testing.T) {
	t.Parallel()
	admin := NewAdminHandler(AdminOptions{})
	for path, want := range map[string]int{
		"/healthz":      http.StatusOK,
		"/readyz":       http.StatusServiceUnavailable, // nil Ready: never ready
		"/debug/routes": http.StatusNotFound,
		"/metrics":      http.StatusNotFound,
	} {
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s = %d, want %d", path, rec.Code, want)
		}
	}
}
