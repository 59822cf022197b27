//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIngressNginxClientCertificates: ingress-nginx's auth-tls-secret on
// the real API server, its Secret made as the ingress-nginx docs make it
// (kubectl create secret generic --from-file=ca.crt): a client with a
// certificate of that authority gets through and the backend sees the
// ssl-client-* fields, one without gets 400, and match-cn refuses another
// subject with 403.
func TestIngressNginxClientCertificates(t *testing.T) {
	ns := namespace(t, "nginxauthtls")
	const nginx = "nginx.ingress.kubernetes.io/"
	kubectl(t, "create", "secret", "generic", "ca-secret", "-n", ns, "--from-file=ca.crt="+cluster.pki.CACert)
	secret, _ := tlsSecretYAML(t, ns, "site-tls", "mtls.authtls.test")
	apply(t, echoWorkload(ns, "app", "authtls-app", 1, "v1")+secret+
		tlsIngress(ns, "app", ns, "mtls.authtls.test", "app", "site-tls",
			nginx+"auth-tls-secret: "+ns+"/ca-secret", nginx+`auth-tls-match-cn: "CN=(alice|bob)"`))
	waitRollout(t, ns, "authtls-app")
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)

	certFor := func(cn string) *tls.Certificate {
		certFile, keyFile, err := cluster.pki.Issue("client-"+cn, &x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	roots := x509.NewCertPool()
	roots.AddCert(cluster.pki.CA)
	get := func(cert *tls.Certificate) (int, string, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: "mtls.authtls.test", MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, p.HTTPSAddr)
			}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://mtls.authtls.test/", nil)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Ssl-Client-Verify", "SUCCESS") // a spoof, never passed on
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	alice := certFor("alice")
	eventually(t, 20*time.Second, func() error {
		code, body, err := get(alice)
		if err != nil || code != http.StatusOK || !strings.Contains(body, "Ssl-Client-Verify: SUCCESS\n") || !strings.Contains(body, "Ssl-Client-Subject-Dn: CN=alice\n") {
			return fmt.Errorf("alice's certificate: %d %q: %w", code, lastLines(body, 12), err)
		}
		if strings.Count(body, "Ssl-Client-Verify:") != 1 {
			return fmt.Errorf("the client's ssl-client-verify reached the backend: %q", body)
		}
		return nil
	})
	if code, _, err := get(nil); err != nil || code != http.StatusBadRequest {
		t.Errorf("no client certificate: %d %v, want 400", code, err)
	}
	if code, _, err := get(certFor("mallory")); err != nil || code != http.StatusForbidden {
		t.Errorf("a subject auth-tls-match-cn does not match: %d %v, want 403", code, err)
	}
}
