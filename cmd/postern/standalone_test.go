package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func manifest(backend, path string) string {
	host, port, _ := net.SplitHostPort(backend)
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: demo
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: %s}]
endpoints: [{addresses: ["%s"]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: demo}
spec:
  ingressClassName: postern
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: %s, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
`, port, host, path)
}

func get(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStandalone runs the whole program on a manifests folder: it serves,
// follows edits, keeps serving through a broken file, and drains on
// cancellation (what SIGTERM does).
func TestStandalone(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend saw %s %s", r.Host, r.URL.Path)
	}))
	defer backend.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(file, []byte(manifest(backend.Listener.Addr().String(), "/")), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, adminAddr, stop := startStandalone(t, dir)
	if code, body := get(t, httpAddr, "web.example.com", "/x"); code != 200 || body != "backend saw web.example.com /x" {
		t.Fatalf("GET web.example.com/x = %d %q", code, body)
	}
	if code, _ := get(t, httpAddr, "other.example.com", "/x"); code != 404 {
		t.Errorf("unknown host = %d, want 404", code)
	}

	// An edit is applied without a restart.
	if err := os.WriteFile(file, []byte(manifest(backend.Listener.Addr().String(), "/only")), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edited path served", func() bool { code, _ := get(t, httpAddr, "web.example.com", "/x"); return code == 404 })
	if code, _ := get(t, httpAddr, "web.example.com", "/only/y"); code != 200 {
		t.Errorf("edited route = %d, want 200", code)
	}

	// A typo keeps the last good objects of the file serving.
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: [broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // give a wrong implementation the chance to drop the routes
	if code, _ := get(t, httpAddr, "web.example.com", "/only/y"); code != 200 {
		t.Errorf("after a broken edit = %d, want the last good route (200)", code)
	}
	if code, body := get(t, adminAddr, "", "/debug/routes"); code != 200 || !strings.Contains(body, `"/only"`) {
		t.Errorf("/debug/routes = %d %q", code, body)
	}
	stop()
}

// TestShutdownDelay: after SIGTERM, /readyz turns 503 at once while the
// listeners keep serving for --shutdown-delay; then the program drains and
// exits cleanly.
func TestShutdownDelay(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend saw %s %s", r.Host, r.URL.Path)
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
			"--log-level", "warn", "--shutdown-grace", "5s", "--shutdown-delay", "3s"}, env(nil), io.Discard)
	}()
	eventually(t, "/readyz 200", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == 200 })

	cancel()
	eventually(t, "/readyz 503 after SIGTERM", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == http.StatusServiceUnavailable })
	select {
	case err := <-done:
		t.Fatalf("run returned (%v) before --shutdown-delay passed", err)
	default:
	}
	if code, body := get(t, httpAddr, "web.example.com", "/x"); code != 200 {
		t.Errorf("a request during the shutdown delay = %d %q, want 200", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v, want a clean exit", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the delay and the grace period")
	}
	if code, _ := get(t, httpAddr, "web.example.com", "/x"); code != 0 {
		t.Errorf("a request after shutdown = %d, want a refused connection", code)
	}
}

// TestStandaloneProxyProtocolFrom: --proxy-protocol-from reaches the
// listeners. A peer it lists must send a PROXY header, whose source is
// then the client; a peer it does not list is served without one.
func TestStandaloneProxyProtocolFrom(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client %s", r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(manifest(backend.Listener.Addr().String(), "/")), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(from string) string {
		httpAddr, adminAddr := freeAddr(t), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"--manifests", dir, "--http-addr", httpAddr, "--https-addr", freeAddr(t), "--metrics-addr", adminAddr,
				"--log-level", "warn", "--proxy-protocol", "--proxy-protocol-from", from}, env(nil), io.Discard)
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run returned %v", err)
			}
		})
		eventually(t, "/readyz 200", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == 200 })
		return httpAddr
	}
	withHeader := func(addr string) string {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET /x HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		return string(b)
	}

	balancer := start("127.0.0.1")
	if got := withHeader(balancer); !strings.HasPrefix(got, "HTTP/1.1 200") || !strings.HasSuffix(got, "client 203.0.113.7") {
		t.Errorf("through the listed balancer: %q, want 200 for client 203.0.113.7", got)
	}
	if code, _ := get(t, balancer, "web.example.com", "/x"); code != 0 {
		t.Errorf("a listed balancer without a header: %d, want the connection closed", code)
	}

	direct := start("10.0.0.0/8")
	if code, body := get(t, direct, "web.example.com", "/x"); code != 200 || body != "client 127.0.0.1" {
		t.Errorf("a peer not listed, no header: %d %q, want 200 for client 127.0.0.1", code, body)
	}
	if got := withHeader(direct); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("a peer not listed, with a header: %q, want 400", got)
	}
}

// TestStandaloneSnippetRefused: the whole program on a folder with an
// Ingress that carries an ingress-nginx snippet answers 503 on its paths,
// never reaching the backend, and serves it once the snippet is removed.
func TestStandaloneSnippetRefused(t *testing.T) {
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, "backend")
	}))
	defer backend.Close()
	plain := manifest(backend.Listener.Addr().String(), "/")
	snippet := strings.Replace(plain, "metadata: {name: web, namespace: demo}\nspec:\n  ingressClassName",
		"metadata:\n  name: web\n  namespace: demo\n  annotations:\n    nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers \"X-A: b\";'\nspec:\n  ingressClassName", 1)
	if snippet == plain {
		t.Fatal("the manifest has no Ingress metadata to annotate")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(file, []byte(snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, _, stop := startStandalone(t, dir)
	if code, body := get(t, httpAddr, "web.example.com", "/x"); code != http.StatusServiceUnavailable || hits.Load() != 0 {
		t.Fatalf("with a snippet: %d %q, backend hits %d; want 503 and none", code, body, hits.Load())
	}
	if err := os.WriteFile(file, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "served without the snippet", func() bool { code, _ := get(t, httpAddr, "web.example.com", "/x"); return code == 200 })
	stop()
}

// startStandalone runs the program on the manifests folder dir, with args
// added, until stop, which fails t unless it exits cleanly, and returns
// once /readyz is 200.
func startStandalone(t *testing.T, dir string, args ...string) (httpAddr, adminAddr string, stop func()) {
	t.Helper()
	httpAddr, adminAddr = freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--manifests", dir, "--http-addr", httpAddr, "--https-addr", freeAddr(t), "--metrics-addr", adminAddr,
			"--log-level", "error", "--shutdown-grace", "5s"}, args...), env(nil), io.Discard)
	}()
	eventually(t, "/readyz 200", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == 200 })
	return httpAddr, adminAddr, func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run returned %v, want a clean exit", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancellation")
		}
	}
}
