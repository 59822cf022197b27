package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/test/pki"
)

// TestStandaloneSSLPassthrough runs the program with
// --enable-ssl-passthrough: the TLS connections for a host with
// ingress-nginx's ssl-passthrough reach its backend unopened (the client
// sees the backend's certificate and talks to it over TLS end to end),
// those for another host on the same listener are terminated as usual,
// and the splice is counted.
func TestStandaloneSSLPassthrough(t *testing.T) {
	ca := pki.Issue(t, "ca", nil, pki.Options{CA: true})
	backendCert := pki.Issue(t, "backend", ca, pki.Options{DNSNames: []string{"pass.example.com"}})
	siteCert := pki.Issue(t, "site", ca, pki.Options{DNSNames: []string{"open.example.com"}})
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend terminated TLS for %s", r.TLS.ServerName)
	}))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{backendCert.TLS()}}
	backend.StartTLS()
	defer backend.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain backend for %s", r.Host)
	}))
	defer plain.Close()

	passSvc, _, _ := strings.Cut(manifest(backend.Listener.Addr().String(), "/"), "---\napiVersion: networking.k8s.io/v1")
	passSvc = strings.NewReplacer("name: web", "name: pass", "service-name: web", "service-name: pass").Replace(passSvc)
	svc, _, _ := strings.Cut(manifest(plain.Listener.Addr().String(), "/"), "---\napiVersion: networking.k8s.io/v1")
	certPEM, keyPEM := siteCert.PEM(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	docs := []string{
		svc, passSvc,
		fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: site, namespace: demo}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n", b64(certPEM), b64(keyPEM)),
		strings.Replace(nginxIngress("pass", "pass.example.com", "/", map[string]string{"ssl-passthrough": "true"}), "name: web,", "name: pass,", 1),
		strings.Replace(nginxIngress("open", "open.example.com", "/", nil), "spec:\n", "spec:\n  tls: [{hosts: [open.example.com], secretName: site}]\n", 1),
	}
	httpsAddr, adminAddr := startStandaloneTLS(t, docs, "--enable-ssl-passthrough")
	ctx := t.Context()

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	fetch := func(host string) (string, string) {
		t.Helper()
		var leaf string
		tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host,
			VerifyConnection: func(cs tls.ConnectionState) error { leaf = cs.PeerCertificates[0].Subject.CommonName; return nil }},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, httpsAddr)
			}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET https://%s/: %v", host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return leaf, string(body)
	}
	var leaf, body string
	eventually(t, "the passthrough host served", func() bool {
		leaf, body = fetch("pass.example.com")
		return body == "backend terminated TLS for pass.example.com"
	})
	if leaf != "backend" {
		t.Errorf("passthrough: the client saw the certificate of %q, want the backend's", leaf)
	}
	if leaf, body = fetch("open.example.com"); leaf != "site" || body != "plain backend for open.example.com" {
		t.Errorf("the other host: certificate %q, body %q; want Postern's site certificate and the plain backend", leaf, body)
	}
	eventually(t, "the splice counted", func() bool {
		_, m := get(t, adminAddr, "", "/metrics")
		return strings.Contains(m, `postern_proxy_passthrough_connections_total{result="spliced"} `) &&
			!strings.Contains(m, `postern_proxy_passthrough_connections_total{result="spliced"} 0`)
	})
}
