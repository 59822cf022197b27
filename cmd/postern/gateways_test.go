package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/test/pki"
)

// poolManifests are two Gateways on the same port and host, each with a
// route to a backend of its own, the second with an HTTPS listener too,
// and an Ingress for the same host on Postern's own listener.
func poolManifests(port, tlsPort int, one, two, certPEM, keyPEM string) string {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	h1, p1, _ := net.SplitHostPort(one)
	h2, p2, _ := net.SplitHostPort(two)
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: postern}
spec: {controllerName: postern.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: one, namespace: demo}
spec:
  gatewayClassName: postern
  listeners: [{name: http, port: %[1]d, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: two, namespace: demo}
spec:
  gatewayClassName: postern
  listeners:
  - {name: http, port: %[1]d, protocol: HTTP}
  - {name: https, port: %[2]d, protocol: HTTPS, hostname: app.example.com, tls: {certificateRefs: [{name: site}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: one, namespace: demo}
spec:
  parentRefs: [{name: one}]
  hostnames: [app.example.com]
  rules: [{backendRefs: [{name: one, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: two, namespace: demo}
spec:
  parentRefs: [{name: two}]
  hostnames: [app.example.com]
  rules: [{backendRefs: [{name: two, port: 80}]}]
---
apiVersion: v1
kind: Secret
metadata: {name: site, namespace: demo}
type: kubernetes.io/tls
data:
  tls.crt: %[3]s
  tls.key: %[4]s
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: legacy, namespace: demo}
spec:
  ingressClassName: postern
  rules:
  - host: app.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: one, port: {number: 80}}}}]
---
apiVersion: v1
kind: Service
metadata: {name: one, namespace: demo}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: demo}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: one, namespace: demo, labels: {kubernetes.io/service-name: one}}
addressType: IPv4
ports: [{port: %[6]s}]
endpoints: [{addresses: ["%[5]s"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: two, namespace: demo, labels: {kubernetes.io/service-name: two}}
addressType: IPv4
ports: [{port: %[8]s}]
endpoints: [{addresses: ["%[7]s"]}]
`, port, tlsPort, b64(certPEM), b64(keyPEM), h1, p1, h2, p2)
}

// TestStandaloneGatewayAddresses: with --gateway-addresses each Gateway
// listens on an address of the pool (here loopback addresses, local on
// Linux), on its own listeners' ports: two Gateways on the same port and
// host answer from their own routes, the HTTPS listener serves its
// certificate, Postern's own listener serves the Ingress only, and a
// Gateway deleted from the folder stops listening.
func TestStandaloneGatewayAddresses(t *testing.T) {
	backend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.Host)
		}))
	}
	one, two := backend("one"), backend("two")
	defer one.Close()
	defer two.Close()
	ca := pki.Issue(t, "ca", nil, pki.Options{CA: true})
	site := pki.Issue(t, "site", ca, pki.Options{DNSNames: []string{"app.example.com"}})
	certPEM, keyPEM := site.PEM(t)
	_, portText, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(portText)
	_, tlsPortText, _ := net.SplitHostPort(freeAddr(t))
	tlsPort, _ := strconv.Atoi(tlsPortText)

	dir := t.TempDir()
	file := filepath.Join(dir, "gateways.yaml")
	manifests := poolManifests(port, tlsPort, one.Listener.Addr().String(), two.Listener.Addr().String(), certPEM, keyPEM)
	if err := os.WriteFile(file, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, adminAddr, stop := startStandalone(t, dir, "--gateway-addresses", "127.77.0.0/24", "--access-log=false")
	defer stop()

	// The addresses the Gateways got, from /debug/routes.
	addrs := listenerAddresses(t, adminAddr)
	if len(addrs) != 3 {
		t.Fatalf("listeners %v, want two Gateways on port %d and one on %d", addrs, port, tlsPort)
	}
	ipOf := func(gw string) string {
		for a, g := range addrs {
			if g == "demo/"+gw {
				h, _, _ := net.SplitHostPort(a)
				return h
			}
		}
		t.Fatalf("no listener of Gateway %s in %v", gw, addrs)
		return ""
	}
	oneIP, twoIP := ipOf("one"), ipOf("two")
	if oneIP == twoIP || !strings.HasPrefix(oneIP, "127.77.0.") || !strings.HasPrefix(twoIP, "127.77.0.") {
		t.Fatalf("Gateway addresses %s and %s, want two of 127.77.0.0/24", oneIP, twoIP)
	}
	at := func(ip string) string { return net.JoinHostPort(ip, portText) }
	eventually(t, "the Gateways' listeners answer", func() bool {
		code, _ := get(t, at(oneIP), "app.example.com", "/")
		code2, _ := get(t, at(twoIP), "app.example.com", "/")
		return code == 200 && code2 == 200
	})
	for _, tc := range []struct {
		name, addr, host string
		status           int
		body             string
	}{
		{"Gateway one", at(oneIP), "app.example.com", 200, "one app.example.com"},
		{"Gateway two, same port and host", at(twoIP), "app.example.com", 200, "two app.example.com"},
		{"a host no route of the Gateway has", at(twoIP), "other.example.com", 404, ""},
		{"Postern's own listener: the Ingress", httpAddr, "app.example.com", 200, "one app.example.com"},
	} {
		code, body := get(t, tc.addr, tc.host, "/")
		if code != tc.status || (tc.body != "" && body != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.status, tc.body)
		}
	}

	// HTTPS on Gateway two's own address, with its listener's certificate.
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example.com", MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	tlsAddr := net.JoinHostPort(twoIP, tlsPortText)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+tlsAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.example.com"
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("HTTPS to Gateway two: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "two app.example.com" {
		t.Errorf("HTTPS to Gateway two: %d %q, want 200 from two", resp.StatusCode, b)
	}

	// Gateway one deleted: its address stops listening, two keeps its own.
	trimmed := strings.Replace(manifests, "kind: Gateway\nmetadata: {name: one, namespace: demo}", "kind: ConfigMap\nmetadata: {name: not-a-gateway, namespace: demo}", 1)
	if err := os.WriteFile(file, []byte(trimmed), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Gateway one's listener closed", func() bool {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(t.Context(), "tcp", at(oneIP))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if code, body := get(t, at(twoIP), "app.example.com", "/"); code != 200 || body != "two app.example.com" {
		t.Errorf("Gateway two after one went: %d %q", code, body)
	}
}

// listenerAddresses returns the Gateway listeners of the live table, by
// address: the Gateway's namespace/name.
func listenerAddresses(t *testing.T, adminAddr string) map[string]string {
	t.Helper()
	code, body := get(t, adminAddr, "", "/debug/routes")
	if code != 200 {
		t.Fatalf("/debug/routes = %d", code)
	}
	var table struct {
		Listeners []struct {
			Address string `json:"address"`
			Gateway struct {
				Namespace string `json:"namespace"`
				Name      string `json:"name"`
			} `json:"gateway"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(body), &table); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, l := range table.Listeners {
		out[l.Address] = l.Gateway.Namespace + "/" + l.Gateway.Name
	}
	return out
}
