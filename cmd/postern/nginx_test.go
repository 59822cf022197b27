package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nginxIngress is an Ingress of class postern for host with one Prefix
// path to Service web, annotated with ingress-nginx's annotations ann
// (names without the prefix).
func nginxIngress(name, host, path string, ann map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: demo\n  annotations:\n", name)
	for k, v := range ann {
		fmt.Fprintf(&b, "    nginx.ingress.kubernetes.io/%s: %q\n", k, v)
	}
	fmt.Fprintf(&b, `spec:
  ingressClassName: postern
  rules:
  - host: %s
    http:
      paths:
      - {path: %q, pathType: ImplementationSpecific, backend: {service: {name: web, port: {name: http}}}}
`, host, path)
	return b.String()
}

// TestStandaloneNginxAnnotations runs the program on a folder of
// Ingresses written for ingress-nginx and checks what a client and the
// backend see: the controller's reading of each annotation and the
// proxy's policy together, as a user who moves gets them.
func TestStandaloneNginxAnnotations(t *testing.T) {
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "%s %s prefix=%s", r.Host, r.RequestURI, r.Header.Get("X-Forwarded-Prefix"))
	}))
	defer backend.Close()
	canaryBackend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "canary %s %s", r.Host, r.RequestURI)
	}))
	defer canaryBackend.Close()
	svc, _, _ := strings.Cut(manifest(backend.Listener.Addr().String(), "/"), "---\napiVersion: networking.k8s.io/v1")
	canarySvc, _, _ := strings.Cut(manifest(canaryBackend.Listener.Addr().String(), "/"), "---\napiVersion: networking.k8s.io/v1")
	canarySvc = strings.NewReplacer("name: web", "name: web-canary", "service-name: web", "service-name: web-canary").Replace(canarySvc)
	canaryIng := strings.Replace(nginxIngress("main-canary", "app.example.com", "/", map[string]string{"canary": "true", "canary-by-header": "X-Canary"}),
		"name: web,", "name: web-canary,", 1)
	docs := []string{
		svc,
		canarySvc,
		canaryIng,
		nginxIngress("rewrite", "rw.example.com", "/api(/|$)(.*)", map[string]string{"rewrite-target": "/$2", "x-forwarded-prefix": "/api"}),
		nginxIngress("moved", "old.example.com", "/", map[string]string{"permanent-redirect": "https://new.example.com$request_uri"}),
		nginxIngress("app", "app.example.com", "/", map[string]string{"app-root": "/dashboard", "from-to-www-redirect": "true"}),
		nginxIngress("elb", "elb.example.com", "/", map[string]string{"force-ssl-redirect": "true"}),
		nginxIngress("vhost", "vhost.example.com", "/", map[string]string{"upstream-vhost": "internal.$host"}),
		nginxIngress("cors", "cors.example.com", "/", map[string]string{"enable-cors": "true", "cors-allow-origin": "https://*.example.com", "force-ssl-redirect": "true"}),
		nginxIngress("limited", "limited.example.com", "/", map[string]string{"limit-rpm": "1", "limit-burst-multiplier": "3"}),
		nginxIngress("allowed", "allowed.example.com", "/", map[string]string{"whitelist-source-range": "127.0.0.0/8, 10.0.0.0/8"}),
		nginxIngress("outside", "outside.example.com", "/", map[string]string{"allowlist-source-range": "10.0.0.0/8"}),
		nginxIngress("denied", "denied.example.com", "/", map[string]string{"denylist-source-range": "127.0.0.1", "allowlist-source-range": "127.0.0.0/8"}),
		nginxIngress("digest", "digest.example.com", "/", map[string]string{"auth-type": "digest", "auth-secret": "users"}),
		nginxIngress("basic", "basic.example.com", "/", map[string]string{"auth-type": "basic", "auth-secret": "users", "auth-realm": "demo"}),
		"apiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: demo}\ntype: Opaque\nstringData:\n  auth: \"foo:{PLAIN}bar\\n\"\n",
		nginxIngress("headers", "headers.example.com", "/", map[string]string{"custom-headers": "demo/custom"}),
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: custom, namespace: demo}\ndata:\n  X-Custom: \"42 $host\"\n",
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, _, stop := startStandalone(t, dir)
	defer stop()

	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		name, host, path string
		header           string // X-Canary
		method, origin   string
		acao             string // Access-Control-Allow-Origin
		status           int
		location, body   string
		noBackend        bool
		auth             string // Authorization
		field            string // "Name: value" the response must have
	}{
		{name: "rewrite-target with a capture group, query kept", host: "rw.example.com", path: "/API/items?x=1", status: 200, body: "rw.example.com /items?x=1 prefix=/api"},
		{name: "rewrite-target, the path alone", host: "rw.example.com", path: "/api", status: 200, body: "rw.example.com / prefix=/api"},
		{name: "permanent-redirect with $request_uri", host: "old.example.com", path: "/a/b?c=1", status: 301, location: "https://new.example.com/a/b?c=1", noBackend: true},
		{name: "app-root", host: "app.example.com", path: "/", status: 302, location: "http://app.example.com/dashboard", noBackend: true},
		{name: "app-root leaves other paths", host: "app.example.com", path: "/dashboard", status: 200, body: "app.example.com /dashboard prefix="},
		{name: "canary-by-header always", host: "app.example.com", path: "/dashboard", header: "always", status: 200, body: "canary app.example.com /dashboard"},
		{name: "canary-by-header never", host: "app.example.com", path: "/dashboard", header: "never", status: 200, body: "app.example.com /dashboard prefix="},
		{name: "from-to-www-redirect", host: "www.app.example.com", path: "/foo/", status: 308, location: "http://app.example.com:80/foo", noBackend: true},
		{name: "force-ssl-redirect without TLS", host: "elb.example.com", path: "/a/?b", status: 308, location: "https://elb.example.com/a/?b", noBackend: true},
		{name: "upstream-vhost with a variable", host: "vhost.example.com", path: "/v", status: 200, body: "internal.vhost.example.com /v prefix="},
		{name: "CORS preflight answered before the redirect to HTTPS", host: "cors.example.com", path: "/api", method: http.MethodOptions, origin: "https://web.example.com", status: 204, acao: "https://web.example.com", noBackend: true},
		{name: "CORS fields on the redirect", host: "cors.example.com", path: "/api", origin: "https://web.example.com", status: 308, location: "https://cors.example.com/api", acao: "https://web.example.com", noBackend: true},
		{name: "CORS origin not allowed", host: "cors.example.com", path: "/api", origin: "https://web.example.org", status: 308, location: "https://cors.example.com/api", noBackend: true},
		{name: "whitelist-source-range covers the client", host: "allowed.example.com", path: "/", status: 200, body: "allowed.example.com / prefix="},
		{name: "allowlist-source-range without the client", host: "outside.example.com", path: "/", status: 403, noBackend: true},
		{name: "denylist-source-range before the allow-list", host: "denied.example.com", path: "/", status: 403, noBackend: true},
		{name: "an access rule Postern cannot honour fails closed", host: "digest.example.com", path: "/", status: 503, noBackend: true},
		{name: "basic auth without credentials", host: "basic.example.com", path: "/", status: 401, noBackend: true, field: `Www-Authenticate: Basic realm="demo"`},
		{name: "basic auth with credentials", host: "basic.example.com", path: "/", status: 200, auth: "Basic Zm9vOmJhcg==", body: "basic.example.com / prefix="},
		{name: "custom-headers, values literal", host: "headers.example.com", path: "/", status: 200, body: "headers.example.com / prefix=", field: "X-Custom: 42 $host"},
	}
	for _, tc := range cases {
		before := hits.Load()
		method := tc.method
		if method == "" {
			method = http.MethodGet
		}
		req, err := http.NewRequestWithContext(context.Background(), method, "http://"+httpAddr+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		if tc.header != "" {
			req.Header.Set("X-Canary", tc.header)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d Location %q, want %d %q", tc.name, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
		if name, v, ok := strings.Cut(tc.field, ": "); ok && resp.Header.Get(name) != v {
			t.Errorf("%s: %s %q, want %q", tc.name, name, resp.Header.Get(name), v)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.acao {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", tc.name, got, tc.acao)
		}
		if tc.body != "" && string(body) != tc.body {
			t.Errorf("%s: the backend saw %q, want %q", tc.name, body, tc.body)
		}
		if reached := hits.Load() != before; reached == tc.noBackend {
			t.Errorf("%s: backend reached %v, want %v", tc.name, reached, !tc.noBackend)
		}
	}
	// limit-rpm 1 with a multiplier of 3: a burst of 3 + 1 requests, then
	// 503 (nginx's limit_req nodelay); a minute drains one.
	var statuses []int
	for range 6 {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+httpAddr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "limited.example.com"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if want := []int{200, 200, 200, 200, 503, 503}; !slices.Equal(statuses, want) {
		t.Errorf("limit-rpm: statuses %v, want %v", statuses, want)
	}
}
