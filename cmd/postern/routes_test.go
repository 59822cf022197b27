package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/route"
)

// adminServer serves the admin handler of a proxy serving t, on a real
// listener, and returns its address.
func adminServer(t *testing.T, tbl *route.Table) string {
	t.Helper()
	h := proxy.New(proxy.Options{})
	h.Swap(tbl)
	srv := httptest.NewServer(proxy.NewAdminHandler(proxy.AdminOptions{Table: h.Table}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestRoutesCommand(t *testing.T) {
	t.Parallel()
	web := &route.Backend{Key: "shop/web:80", Namespace: "shop", Service: "web", Port: "80",
		Endpoints: []route.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080", Terminating: true}}}
	many := &route.Backend{Key: "shop/api:grpc", Namespace: "shop", Service: "api", Port: "grpc", Protocol: route.ProtocolGRPC}
	for i := range 6 {
		many.Endpoints = append(many.Endpoints, route.Endpoint{Address: "10.0.1." + string(rune('1'+i)) + ":9000"})
	}
	missing := &route.Backend{Key: "shop/gone:80", Namespace: "shop", Service: "gone", Port: "80", Unavailable: `service "gone" not found`}
	src := route.Source{Namespace: "shop", Name: "storefront"}
	tbl := route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("shop.example.com", []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web), Source: src},
			{Match: route.Match{PathType: route.PathExact, Path: "/api"}, Backends: route.Single(many), Source: route.Source{Namespace: "shop", Name: "api"}},
		}),
		route.NewVirtualHost("*.example.com", []*route.Route{{Match: route.Match{PathType: route.PathPrefix, Path: "/old"}, Backends: route.Single(missing), Source: src}}),
		route.NewVirtualHost("", []*route.Route{{Match: route.Match{PathType: route.PathPrefix, Path: "/healthz"}, Backends: route.Single(web), Source: src}}),
	}, &route.Route{Backends: route.Single(web), Source: route.Source{Namespace: "shop", Name: "fallback"}}).WithTLS([]*route.TLSHost{{
		Host: "shop.example.com", Redirect: true, Source: src,
		Certificate: &route.Certificate{Source: route.Source{Namespace: "shop", Name: "shop-tls"}, NotAfter: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)},
	}})
	addr := adminServer(t, tbl)

	var out bytes.Buffer
	if err := run(t.Context(), []string{"routes", "--metrics-addr", addr}, env(nil), &out); err != nil {
		t.Fatalf("postern routes: %v", err)
	}
	want := `HOST              PATH      TYPE    BACKEND               ENDPOINTS                                                        SOURCE
shop.example.com  /api      Exact   shop/api:grpc (GRPC)  10.0.1.1:9000,10.0.1.2:9000,10.0.1.3:9000,10.0.1.4:9000 +2 more  shop/api
shop.example.com  /         Prefix  shop/web:80           10.0.0.1:8080,10.0.0.2:8080(terminating)                         shop/storefront
*.example.com     /old      Prefix  shop/gone:80          none (service "gone" not found)                                  shop/storefront
*                 /healthz  Prefix  shop/web:80           10.0.0.1:8080,10.0.0.2:8080(terminating)                         shop/storefront
(default)         -         -       shop/web:80           10.0.0.1:8080,10.0.0.2:8080(terminating)                         shop/fallback

TLS HOST          CERTIFICATE           EXPIRES     REDIRECT  SOURCE
shop.example.com  secret shop/shop-tls  2027-03-01  true      shop/storefront
`
	if got := out.String(); got != want {
		t.Errorf("postern routes printed:\n%s\nwant:\n%s", got, want)
	}

	// The address may come from the environment, like the server's flag.
	out.Reset()
	if err := run(t.Context(), []string{"routes"}, env(map[string]string{"POSTERN_METRICS_ADDR": addr}), &out); err != nil || !strings.HasPrefix(out.String(), "HOST") {
		t.Errorf("POSTERN_METRICS_ADDR: err %v, output %q", err, out.String())
	}
}

func TestRoutesCommandEmptyTable(t *testing.T) {
	t.Parallel()
	addr := adminServer(t, route.Empty())
	var out bytes.Buffer
	if err := run(t.Context(), []string{"routes", "--metrics-addr", addr}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "HOST  PATH  TYPE  BACKEND  ENDPOINTS  SOURCE" {
		t.Errorf("empty table printed %q", got)
	}
}

func TestRoutesCommandErrors(t *testing.T) {
	t.Parallel()
	notRoutes := httptest.NewServer(proxy.NewAdminHandler(proxy.AdminOptions{})) // /debug/routes off: 404
	t.Cleanup(notRoutes.Close)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-addr", freeAddr(t)}, "is postern running with --metrics-addr there?"},
		{[]string{"--metrics-addr", "nohostport"}, `invalid value "nohostport" for --metrics-addr`},
		{[]string{"--metrics-addr", notRoutes.Listener.Addr().String()}, "404 Not Found"},
		{[]string{"--timeout", "0s"}, "want a positive duration"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"routes"}, tt.args...), env(nil), &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("postern routes %q: error %v, want one line saying %q", tt.args, err, tt.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"routes", "--help"}, env(nil), &out); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "-metrics-addr") {
		t.Errorf("routes --help: err %v, output %q", err, out.String())
	}
}

func TestRoutesURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":10254":         "http://127.0.0.1:10254/debug/routes",
		"0.0.0.0:10254":  "http://127.0.0.1:10254/debug/routes",
		"10.1.2.3:9000":  "http://10.1.2.3:9000/debug/routes",
		"[::1]:10254":    "http://[::1]:10254/debug/routes",
		"localhost:1234": "http://localhost:1234/debug/routes",
	} {
		if got, err := routesURL(addr); err != nil || got != want {
			t.Errorf("routesURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}

// TestServeObservability runs the whole program on a manifests folder and
// looks at it the way an operator does: request IDs, /metrics after
// traffic, pprof, and `postern routes`.
func TestServeObservability(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Request-Id"))
	}))
	defer backend.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(manifest(backend.Listener.Addr().String(), "/")), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--manifests", dir, "--http-addr", httpAddr, "--https-addr", freeAddr(t), "--metrics-addr", adminAddr,
			"--log-level", "warn", "--shutdown-grace", "5s", "--enable-pprof", "--access-log=false"}, env(nil), io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	eventually(t, "/readyz 200", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == 200 })

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.example.com"
	req.Header.Set("X-Request-Id", "op-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "op-42" || resp.Header.Get("X-Request-Id") != "op-42" {
		t.Errorf("GET = %d, backend saw request ID %q, client got %q; want 200 and op-42 both ways", resp.StatusCode, body, resp.Header.Get("X-Request-Id"))
	}

	for _, want := range []string{
		`postern_proxy_requests_total{code="200",ingress="web",method="GET",namespace="demo",service="web"} 1`,
		`postern_proxy_request_duration_seconds_count{ingress="web",namespace="demo",service="web"} 1`,
		`postern_controller_table_builds_total{result="ok"} 1`,
		`postern_controller_objects{kind="Ingress"} 1`,
		`postern_controller_leader 1`,
		`postern_proxy_upstream_errors_total{reason="dial"} 0`,
		`postern_build_info{goversion="`,
	} {
		eventually(t, "/metrics shows "+want, func() bool { _, m := get(t, adminAddr, "", "/metrics"); return strings.Contains(m, want) })
	}
	if code, _ := get(t, adminAddr, "", "/debug/pprof/cmdline"); code != 200 {
		t.Errorf("/debug/pprof/cmdline with --enable-pprof = %d, want 200", code)
	}

	var out bytes.Buffer
	if err := run(t.Context(), []string{"routes", "--metrics-addr", adminAddr}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "web.example.com / Prefix demo/web:http "+backend.Listener.Addr().String()+" demo/web" {
		t.Errorf("postern routes:\n%s", out.String())
	}
}

// TestPrintTableConditionsAndWeights shows a route's method, header and
// query conditions after its path, and one row per weighted backend.
func TestPrintTableConditionsAndWeights(t *testing.T) {
	t.Parallel()
	re, err := route.RegexField("X-User", "[a-z]+")
	if err != nil {
		t.Fatal(err)
	}
	a := &route.Backend{Key: "ns/a:80", Endpoints: []route.Endpoint{{Address: "10.0.0.1:80"}}}
	b := &route.Backend{Key: "ns/b:80"}
	tbl := route.NewTable([]*route.VirtualHost{route.NewVirtualHost("w.test", []*route.Route{{
		Match: route.Match{PathType: route.PathPrefix, Path: "/api", Method: "GET",
			Headers: []route.FieldMatch{route.ExactField("X-Env", "canary"), re}, Query: []route.FieldMatch{route.ExactField("v", "2")}},
		Backends: []route.WeightedBackend{{Backend: a, Weight: 9}, {Backend: b, Weight: 1}},
		Source:   route.Source{Namespace: "ns", Name: "split"},
	}})}, nil)
	var out strings.Builder
	if err := printTable(&out, tbl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"/api [GET X-Env=canary X-User~[a-z]+ ?v=2]", "ns/a:80 weight 9", "10.0.0.1:80", "ns/b:80 weight 1", "none",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("routes output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "ns/split"); n != 2 {
		t.Errorf("%d rows for the route, want 2 (one per backend):\n%s", n, out.String())
	}
}

// TestPrintTableCanary marks an ingress-nginx canary's backend, without
// the weight 0 that only keeps the weighted choice off it.
func TestPrintTableCanary(t *testing.T) {
	t.Parallel()
	main := &route.Backend{Key: "ns/main:80"}
	can := &route.Backend{Key: "ns/canary:80"}
	tbl := route.NewTable([]*route.VirtualHost{route.NewVirtualHost("c.test", []*route.Route{{
		Match:    route.Match{PathType: route.PathPrefix, Path: "/"},
		Backends: []route.WeightedBackend{{Backend: main, Weight: 1}, {Backend: can}},
		Canary:   &route.Canary{Header: "X-Canary", WeightTotal: 100},
	}})}, nil)
	var out strings.Builder
	if err := printTable(&out, tbl); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "ns/canary:80 (canary)") || strings.Contains(s, "weight") {
		t.Errorf("routes output:\n%s", s)
	}
}
