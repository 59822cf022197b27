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
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-dev/postern/test/pki"
)

// TestStandaloneClientCertificates runs the program with a host that has
// ingress-nginx's auth-tls-secret and one that has not, both on one
// certificate, over real TLS handshakes, HTTP/1.1 (the fast path) and
// HTTP/2 (net/http): only the handshake for the protected host asks for a
// client certificate; a valid one gets through with the ssl-client-*
// fields and a spoofed ssl-client-verify dropped; none or one of another
// authority gets 400; HTTP/2 requests for the protected host on the
// other host's connection are refused with 421, never served unchecked.
func TestStandaloneClientCertificates(t *testing.T) {
	serverCA := pki.Issue(t, "server ca", nil, pki.Options{CA: true})
	server := pki.Issue(t, "server", serverCA, pki.Options{DNSNames: []string{"mtls.example.com", "open.example.com"}})
	clientCA := pki.Issue(t, "client ca", nil, pki.Options{CA: true})
	alice := pki.Issue(t, "alice", clientCA, pki.Options{})
	otherCA := pki.Issue(t, "other ca", nil, pki.Options{CA: true})
	mallory := pki.Issue(t, "mallory", otherCA, pki.Options{})

	var seen atomic.Value
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Clone())
		fmt.Fprintf(w, "ok %s", r.Host)
	}))
	defer backend.Close()
	svc, _, _ := strings.Cut(manifest(backend.Listener.Addr().String(), "/"), "---\napiVersion: networking.k8s.io/v1")
	certPEM, keyPEM := server.PEM(t)
	caPEM, _ := clientCA.PEM(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	docs := []string{
		svc,
		fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: site, namespace: demo}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n", b64(certPEM), b64(keyPEM)),
		fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: client-ca, namespace: demo}\ntype: Opaque\ndata:\n  ca.crt: %s\n", b64(caPEM)),
		strings.Replace(nginxIngress("mtls", "mtls.example.com", "/", map[string]string{"auth-tls-secret": "demo/client-ca", "auth-tls-pass-certificate-to-upstream": "true"}),
			"spec:\n", "spec:\n  tls: [{hosts: [mtls.example.com], secretName: site}]\n", 1),
		strings.Replace(nginxIngress("open", "open.example.com", "/", nil), "spec:\n", "spec:\n  tls: [{hosts: [open.example.com], secretName: site}]\n", 1),
	}
	httpsAddr, _ := startStandaloneTLS(t, docs)
	ctx := t.Context()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	// client returns a client for protocol proto presenting cert (nil:
	// none), and a counter of the handshakes that asked for one.
	client := func(proto string, cert *pki.Cert) (*http.Client, *atomic.Int32) {
		asked := new(atomic.Int32)
		cfg := &tls.Config{RootCAs: roots, NextProtos: []string{proto},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				asked.Add(1)
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				c := cert.TLS()
				return &c, nil
			}}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: proto == "h2", Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, httpsAddr)
			}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}, asked
	}
	// sendOn sends GET / for host on a connection to connHost (its SNI).
	sendOn := func(c *http.Client, connHost, host string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+connHost+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Ssl-Client-Verify", "SUCCESS") // a spoof
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET https://%s/: %v", host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	send := func(c *http.Client, host string) (int, string) { t.Helper(); return sendOn(c, host, host) }

	for _, proto := range []string{"http/1.1", "h2"} {
		c, asked := client(proto, alice)
		if code, body := send(c, "mtls.example.com"); code != 200 || body != "ok mtls.example.com" {
			t.Errorf("%s, a valid client certificate: %d %q", proto, code, body)
		}
		h, _ := seen.Load().(http.Header)
		if h.Get("Ssl-Client-Verify") != "SUCCESS" || h.Get("Ssl-Client-Subject-Dn") != "CN=alice" || h.Get("Ssl-Client-Issuer-Dn") != "CN=client ca" ||
			!strings.HasPrefix(h.Get("Ssl-Client-Cert"), "-----BEGIN%20CERTIFICATE-----") || len(h.Values("Ssl-Client-Verify")) != 1 {
			t.Errorf("%s: the endpoint saw %v", proto, h)
		}
		if asked.Load() != 1 {
			t.Errorf("%s: the protected host's handshake asked for a certificate %d times, want 1", proto, asked.Load())
		}
		c, asked = client(proto, nil)
		if code, _ := send(c, "open.example.com"); code != 200 || asked.Load() != 0 {
			t.Errorf("%s, the open host: %d, and its handshake asked for a client certificate %d times (want 200, never)", proto, code, asked.Load())
		}
		if h, _ := seen.Load().(http.Header); h.Get("Ssl-Client-Verify") != "SUCCESS" {
			// Without auth-tls a client's fields pass, as in ingress-nginx.
			t.Errorf("%s, the open host: ssl-client-verify %q", proto, h.Get("Ssl-Client-Verify"))
		}
		if proto == "h2" {
			// The open host's connection (same certificate) may not
			// carry the protected host's requests.
			if code, _ := sendOn(c, "open.example.com", "mtls.example.com"); code != http.StatusMisdirectedRequest {
				t.Errorf("h2, the protected host on the open host's connection: %d, want 421", code)
			}
		}
		c, _ = client(proto, nil)
		if code, _ := send(c, "mtls.example.com"); code != http.StatusBadRequest {
			t.Errorf("%s, no client certificate: %d, want 400", proto, code)
		}
		c, _ = client(proto, mallory)
		if code, _ := send(c, "mtls.example.com"); code != http.StatusBadRequest {
			t.Errorf("%s, another authority's certificate: %d, want 400", proto, code)
		}
	}
}

// startStandaloneTLS writes docs to a folder and runs the program on it
// with args added, until the test ends; it returns the HTTPS and admin
// addresses once /readyz answers 200.
func startStandaloneTLS(t *testing.T, docs []string, args ...string) (httpsAddr, adminAddr string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	httpsAddr, adminAddr = freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--manifests", dir, "--http-addr", freeAddr(t), "--https-addr", httpsAddr, "--metrics-addr", adminAddr,
			"--log-level", "error", "--access-log=false"}, args...), env(nil), io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v, want a clean exit", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancellation")
		}
	})
	eventually(t, "/readyz 200", func() bool { code, _ := get(t, adminAddr, "", "/readyz"); return code == 200 })
	return httpsAddr, adminAddr
}
