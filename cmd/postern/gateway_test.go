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
	"testing"
	"time"
)

// gatewayManifests is a folder's worth of Gateway API objects beside an
// Ingress: a GatewayClass of ours, a Gateway with an HTTP listener, and
// an HTTPRoute with matches, weights, filters and a missing backend.
func gatewayManifests(v1, v2 string) string {
	h1, p1, _ := net.SplitHostPort(v1)
	h2, p2, _ := net.SplitHostPort(v2)
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: postern}
spec: {controllerName: postern.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: demo}
spec:
  gatewayClassName: postern
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: demo}
spec:
  parentRefs: [{name: web}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-version, value: "2"}]}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Via, value: gateway}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: X-Served, value: "yes"}]}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: internal.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: Exact, value: /missing}}]
    backendRefs: [{name: nowhere, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: v1, namespace: demo}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: demo}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v1, namespace: demo, labels: {kubernetes.io/service-name: v1}}
addressType: IPv4
ports: [{port: %s}]
endpoints: [{addresses: ["%s"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v2, namespace: demo, labels: {kubernetes.io/service-name: v2}}
addressType: IPv4
ports: [{port: %s}]
endpoints: [{addresses: ["%s"]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: legacy, namespace: demo}
spec:
  ingressClassName: postern
  rules:
  - host: legacy.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: v1, port: {number: 80}}}}]
`, p1, h1, p2, h2)
}

// TestStandaloneGatewayAPI: Postern serves GatewayClass, Gateway and
// HTTPRoute manifests beside an Ingress, from a folder: header matches
// choose the backend, filters edit heads, redirect and rewrite, and a
// missing backend answers 500.
func TestStandaloneGatewayAPI(t *testing.T) {
	backend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s via=%s", name, r.Host, r.URL.RequestURI(), r.Header.Get("X-Via"))
		}))
	}
	v1, v2 := backend("v1"), backend("v2")
	defer v1.Close()
	defer v2.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(gatewayManifests(v1.Listener.Addr().String(), v2.Listener.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, _, stop := startStandalone(t, dir)
	defer stop()

	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(host, path string, header map[string]string) (resp *http.Response, body string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+httpAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, tc := range []struct {
		name, host, path string
		header           map[string]string
		status           int
		body, location   string
		respHeader       string
	}{
		{name: "header match", host: "shop.example.com", path: "/api/x", header: map[string]string{"X-Version": "2"}, status: 200, body: "v2 shop.example.com /api/x via="},
		{name: "no header: the other rule, its filters", host: "shop.example.com", path: "/api/x", status: 200, body: "v1 shop.example.com /api/x via=gateway", respHeader: "yes"},
		{name: "redirect", host: "shop.example.com", path: "/old/page?q=1", status: 301, location: "https://shop.example.com/new/page?q=1"},
		{name: "rewrite", host: "shop.example.com", path: "/strip/deep?q=2", status: 200, body: "v1 internal.example.com /deep?q=2 via="},
		{name: "missing backend", host: "shop.example.com", path: "/missing", status: 500},
		{name: "no rule", host: "shop.example.com", path: "/elsewhere", status: 404},
		{name: "the Ingress beside", host: "legacy.example.com", path: "/x", status: 200, body: "v1 legacy.example.com /x via="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(tc.host, tc.path, tc.header) //nolint:bodyclose // do closes it
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tc.status, body)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if got := resp.Header.Get("X-Served"); got != tc.respHeader {
				t.Errorf("X-Served %q, want %q", got, tc.respHeader)
			}
		})
	}
}
