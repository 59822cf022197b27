package proxy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// waitFor polls cond until it holds, failing the test after testTimeout.
// Metrics and access-log records are taken after the response went out,
// so a client may see its response a moment before they are.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sample is a series of a gathered metric family: its value (counter,
// gauge) or sample count and sum (histogram).
type sample struct {
	value, count, sum float64
}

// scalar returns the sum of the series of the family name in reg: the
// value of an unlabelled counter or gauge.
func scalar(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	var sum float64
	for _, s := range gather(t, reg, name) {
		sum += s.value
	}
	return sum
}

// gather returns the series of the family name in reg, keyed by their
// labels as `name="value",...` in label order.
func gather(t *testing.T, reg *prometheus.Registry, name string) map[string]sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]sample)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			s := sample{value: m.GetCounter().GetValue() + m.GetGauge().GetValue()}
			if h := m.GetHistogram(); h != nil {
				s.count, s.sum = float64(h.GetSampleCount()), h.GetSampleSum()
			}
			out[strings.Join(labels, ",")] = s
		}
	}
	return out
}

// values returns the values of the series in m, for comparing counters.
func values(m map[string]sample) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, s := range m {
		out[k] = s.value
	}
	return out
}

func counts(m map[string]sample) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, s := range m {
		out[k] = s.count
	}
	return out
}

// diffMaps returns the lines by which got and want differ, or "".
func diffMaps(got, want map[string]float64) string {
	keys := make(map[string]bool)
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var b strings.Builder
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "- {%s} %g\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "+ {%s} %g\n", k, g)
		case g != w:
			fmt.Fprintf(&b, "- {%s} %g\n+ {%s} %g\n", k, w, k, g)
		}
	}
	return b.String()
}

func labels(ns, ing, svc string) string {
	return fmt.Sprintf(`ingress=%q,namespace=%q,service=%q`, ing, ns, svc)
}

func reqLabels(ns, ing, svc, method, code string) string {
	return fmt.Sprintf(`code=%q,ingress=%q,method=%q,namespace=%q,service=%q`, code, ing, method, ns, svc)
}

// deadAddr returns an address nothing listens on: dialing it is refused.
// deadAddr returns an address that refuses connections: a port that was
// free on 127.0.0.254, where no test listens (they all listen on
// 127.0.0.1), so that no other test's listener can take it over while
// tests run in parallel.
func deadAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.254:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func shopRoute(path string, be *route.Backend) *route.Route {
	return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Backends: route.Single(be), Source: route.Source{Namespace: "ns", Name: "shop"}}
}

// shopTable routes shop.example.com: / to api, /dead to an endpoint that
// refuses connections, /empty to a backend without endpoints.
func shopTable(t *testing.T, api *testBackend, dead string) *route.Table {
	deadBe := backendOf("dead", "")
	deadBe.Endpoints = []route.Endpoint{{Address: dead}}
	return route.NewTable([]*route.VirtualHost{vhost("shop.example.com",
		shopRoute("/", backendOf("api", "", api)),
		shopRoute("/dead", deadBe),
		shopRoute("/empty", backendOf("empty", "")),
	)}, nil)
}

// trafficSender returns a function that sends one request through the proxy
// at addr and fails the test unless it is answered with want.
func trafficSender(t *testing.T, c *http.Client, addr string) func(method, host, path, body string, want int) {
	return func(method, host, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if body == "" {
			req.Body = http.NoBody
		}
		resp, _ := do(t, c, req)
		if resp.StatusCode != want {
			t.Fatalf("%s %s%s = %d, want %d", method, host, path, resp.StatusCode, want)
		}
	}
}

// checkTrafficMetrics checks the request, duration, size and upstream error
// series after the traffic TestMetricsAfterTraffic sends to shopTable.
func checkTrafficMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	wantRequests := map[string]float64{
		reqLabels("ns", "shop", "api", "GET", "200"):   3,
		reqLabels("ns", "shop", "api", "POST", "200"):  1,
		reqLabels("ns", "shop", "api", "OTHER", "200"): 1,
		reqLabels("ns", "shop", "dead", "GET", "502"):  1,
		reqLabels("ns", "shop", "empty", "GET", "503"): 1,
		reqLabels("", "", "", "GET", "404"):            1,
	}
	if d := diffMaps(values(gather(t, reg, "postern_proxy_requests_total")), wantRequests); d != "" {
		t.Errorf("postern_proxy_requests_total (-want +got):\n%s", d)
	}
	wantDurations := map[string]float64{
		labels("ns", "shop", "api"):   5,
		labels("ns", "shop", "dead"):  1,
		labels("ns", "shop", "empty"): 1,
		labels("", "", ""):            1,
	}
	if d := diffMaps(counts(gather(t, reg, "postern_proxy_request_duration_seconds")), wantDurations); d != "" {
		t.Errorf("postern_proxy_request_duration_seconds counts (-want +got):\n%s", d)
	}
	// Only requests that reached for an endpoint have an upstream time.
	wantUpstream := map[string]float64{labels("ns", "shop", "api"): 5, labels("ns", "shop", "dead"): 1}
	if d := diffMaps(counts(gather(t, reg, "postern_proxy_upstream_response_seconds")), wantUpstream); d != "" {
		t.Errorf("postern_proxy_upstream_response_seconds counts (-want +got):\n%s", d)
	}
	if s := gather(t, reg, "postern_proxy_request_size_bytes")[labels("ns", "shop", "api")]; s.count != 5 || s.sum != float64(len("hello world")) {
		t.Errorf("request_size_bytes of api: %d requests, %g bytes; want 5, %d", int(s.count), s.sum, len("hello world"))
	}
	// The backend answers "api <path>"; the proxy's 404 body is its own.
	wantOut := float64(3*len("api /a") + len("api /a") + len("api /pot"))
	if s := gather(t, reg, "postern_proxy_response_size_bytes")[labels("ns", "shop", "api")]; s.sum != wantOut {
		t.Errorf("response_size_bytes of api = %g, want %g", s.sum, wantOut)
	}
	if s := gather(t, reg, "postern_proxy_response_size_bytes")[labels("", "", "")]; s.sum != float64(len(pipeline.ErrorBody(http.StatusNotFound))) {
		t.Errorf("response_size_bytes of the 404 = %g, want %d", s.sum, len(pipeline.ErrorBody(http.StatusNotFound)))
	}
	const wantErrs = `
	# HELP postern_proxy_upstream_errors_total Attempts to reach an endpoint that failed, by reason: dial, timeout, reset, tls, other.
	# TYPE postern_proxy_upstream_errors_total counter
	postern_proxy_upstream_errors_total{reason="dial"} 1
	postern_proxy_upstream_errors_total{reason="other"} 0
	postern_proxy_upstream_errors_total{reason="reset"} 0
	postern_proxy_upstream_errors_total{reason="timeout"} 0
	postern_proxy_upstream_errors_total{reason="tls"} 0
	`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantErrs), "postern_proxy_upstream_errors_total"); err != nil {
		t.Error(err)
	}
}

// checkRetriesCounted checks that retries_total starts at 0 and counts a
// Retried.
func checkRetriesCounted(t *testing.T, reg *prometheus.Registry, m *observe.Metrics) {
	t.Helper()
	if got := scalar(t, reg, "postern_proxy_retries_total"); got != 0 {
		t.Errorf("retries = %g before any retry", got)
	}
	m.Retried()
	if got := scalar(t, reg, "postern_proxy_retries_total"); got != 1 {
		t.Errorf("retries = %g after Retried, want 1", got)
	}
}

// checkNoDeadSeries checks that the series of the dead and empty services are
// gone once a table without their routes is swapped in.
func checkNoDeadSeries(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	for _, name := range []string{"postern_proxy_requests_total", "postern_proxy_request_duration_seconds", "postern_proxy_upstream_response_seconds"} {
		for k := range gather(t, reg, name) {
			if strings.Contains(k, `service="dead"`) || strings.Contains(k, `service="empty"`) {
				t.Errorf("%s{%s} still exported after its route went away", name, k)
			}
		}
	}
}

func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		m := observe.NewMetrics(reg)
		api := newBackend(t, "api", nil)
		dead := deadAddr(t)
		h := New(Options{Metrics: m})
		h.Swap(shopTable(t, api, dead))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{Metrics: m})
		c := newClient(t)

		send := trafficSender(t, c, addr)
		for range 3 {
			send(http.MethodGet, "shop.example.com", "/a", "", http.StatusOK)
		}
		send(http.MethodPost, "shop.example.com", "/a", "hello world", http.StatusOK)
		send("BREW", "shop.example.com", "/pot", "", http.StatusOK)
		send(http.MethodGet, "shop.example.com", "/dead", "", http.StatusBadGateway)
		send(http.MethodGet, "shop.example.com", "/empty/x", "", http.StatusServiceUnavailable)
		send(http.MethodGet, "nowhere.test", "/", "", http.StatusNotFound)

		waitFor(t, "8 requests counted", func() bool {
			var n float64
			for _, s := range gather(t, reg, "postern_proxy_requests_total") {
				n += s.value
			}
			return n == 8
		})
		checkTrafficMetrics(t, reg)
		checkRetriesCounted(t, reg, m)

		// The client keeps one connection alive; closing it is seen.
		if got := scalar(t, reg, "postern_proxy_open_connections"); got != 1 {
			t.Errorf("open_connections = %g with one keep-alive connection, want 1", got)
		}
		c.CloseIdleConnections()
		waitFor(t, "open_connections back to 0", func() bool { return scalar(t, reg, "postern_proxy_open_connections") == 0 })

		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}

		// A table without /dead: its series go, the others keep counting.
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("shop.example.com",
			shopRoute("/", backendOf("api", "", api)),
		)}, nil))
		checkNoDeadSeries(t, reg)
		send(http.MethodGet, "shop.example.com", "/a", "", http.StatusOK)
		waitFor(t, "the request after the swap", func() bool {
			return gather(t, reg, "postern_proxy_requests_total")[reqLabels("ns", "shop", "api", "GET", "200")].value == 4
		})
	})
}

func TestMetricsUpstreamErrorsFromRealFailures(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		m := observe.NewMetrics(reg)
		slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		hangup := hangupAddr(t)
		tlsBe := backendOf("plain", "", newBackend(t, "plain", nil)) // speaks HTTP, not TLS
		tlsBe.Protocol = route.ProtocolHTTPS
		deadBe := backendOf("dead", "")
		deadBe.Endpoints = []route.Endpoint{{Address: deadAddr(t)}}
		hangupBe := backendOf("hangup", "")
		hangupBe.Endpoints = []route.Endpoint{{Address: hangup}}
		h := New(Options{Metrics: m, ResponseHeaderTimeout: 50 * time.Millisecond})
		t.Cleanup(h.CloseIdleConnections)
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test",
			prefix("/slow", backendOf("slow", "", slow)),
			prefix("/hangup", hangupBe),
			prefix("/tls", tlsBe),
			prefix("/dead", deadBe),
		)}, nil))
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		for path, want := range map[string]int{
			"/slow": http.StatusGatewayTimeout, "/hangup": http.StatusBadGateway,
			"/tls": http.StatusBadGateway, "/dead": http.StatusBadGateway,
		} {
			if resp, _ := get(t, c, addr, "app.test", path); resp.StatusCode != want {
				t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
			}
		}
		want := map[string]float64{`reason="dial"`: 1, `reason="timeout"`: 1, `reason="reset"`: 1, `reason="tls"`: 1, `reason="other"`: 0}
		if d := diffMaps(values(gather(t, reg, "postern_proxy_upstream_errors_total")), want); d != "" {
			t.Errorf("postern_proxy_upstream_errors_total (-want +got):\n%s", d)
		}
	})
}

func TestMetricsWebSocketTunnel(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		m := observe.NewMetrics(reg)
		b := wsBackend(t)
		h := New(Options{Metrics: m})
		h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("ws", "", b)), Source: route.Source{Namespace: "ns", Name: "chat"}}))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{Metrics: m})
		c, br := dialWebSocket(t, addr)
		if _, err := c.Write(frame([]byte("hi"), true)); err != nil {
			t.Fatal(err)
		}
		if got, err := readFrame(br); err != nil || string(got) != "hi" {
			t.Fatalf("echo = %q, %v", got, err)
		}
		// A hijacked connection is still an open connection.
		if got := scalar(t, reg, "postern_proxy_open_connections"); got != 1 {
			t.Errorf("open_connections during the tunnel = %g, want 1", got)
		}
		c.Close()
		waitFor(t, "the tunnel counted as a 101", func() bool {
			return gather(t, reg, "postern_proxy_requests_total")[reqLabels("ns", "chat", "ws", "GET", "101")].value == 1
		})
		waitFor(t, "open_connections back to 0", func() bool { return scalar(t, reg, "postern_proxy_open_connections") == 0 })
	})
}

func TestAdminPprofOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		admin := NewAdminHandler(AdminOptions{Pprof: enabled})
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
			rec := httptest.NewRecorder()
			admin.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
			want := http.StatusNotFound
			if enabled {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Errorf("pprof %t: GET %s = %d, want %d", enabled, path, rec.Code, want)
			}
		}
	}
}

// TestDebugRoutesShowsSources checks that /debug/routes tells which
// Ingress produced each route, and what its backend and endpoints are.
func TestDebugRoutesShowsSources(t *testing.T) {
	t.Parallel()
	be := &route.Backend{Key: "shop/api:80", Namespace: "shop", Service: "api", Port: "80",
		Endpoints: []route.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080", Terminating: true}}}
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{
		vhost("app.example.com", &route.Route{Match: route.Match{PathType: route.PathExact, Path: "/api"}, Backends: route.Single(be), Source: route.Source{Namespace: "shop", Name: "storefront"}}),
	}, &route.Route{Backends: route.Single(be), Source: route.Source{Namespace: "shop", Name: "fallback"}}))
	rec := httptest.NewRecorder()
	NewAdminHandler(AdminOptions{Table: h.Table}).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/debug/routes", nil))
	var got struct {
		VirtualHosts []struct {
			Host   string
			Routes []struct {
				Path     string
				Source   route.Source
				Backends []struct {
					Backend struct {
						Service   string
						Endpoints []route.Endpoint
					}
					Weight int32
				}
			}
		}
		Default struct{ Source route.Source }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("/debug/routes: %v\n%s", err, rec.Body)
	}
	if len(got.VirtualHosts) != 1 || len(got.VirtualHosts[0].Routes) != 1 {
		t.Fatalf("/debug/routes:\n%s", rec.Body)
	}
	r := got.VirtualHosts[0].Routes[0]
	if len(r.Backends) != 1 {
		t.Fatalf("/debug/routes: route has %d backends, want 1:\n%s", len(r.Backends), rec.Body)
	}
	if b := r.Backends[0]; r.Source != (route.Source{Namespace: "shop", Name: "storefront"}) || b.Backend.Service != "api" || b.Weight != 1 ||
		!reflect.DeepEqual(b.Backend.Endpoints, be.Endpoints) || got.Default.Source.Name != "fallback" {
		t.Errorf("/debug/routes does not show source, backend and endpoints:\n%s", rec.Body)
	}
}
