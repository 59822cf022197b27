//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsIngress returns an Ingress of class with one rule host -> svc:80 and
// spec.tls for host from secret, with extra annotations ("k: v" lines).
func tlsIngress(ns, name, class, host, svc, secret string, annotations ...string) string {
	ann := ""
	if len(annotations) > 0 {
		ann = "\n  annotations:\n" + "    " + strings.Join(annotations, "\n    ")
	}
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %s
  namespace: %s%s
spec:
  ingressClassName: %s
  tls:
  - hosts: [%q]
    secretName: %s
  rules:
  - host: %q
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: %s, port: {number: 80}}}}
---
`, name, ns, ann, class, host, secret, host, svc)
}

// tlsSecretYAML returns a kubernetes.io/tls Secret holding a certificate
// for host issued by the run's CA, and the certificate's serial.
func tlsSecretYAML(t testing.TB, ns, name, host string) (string, string) {
	t.Helper()
	certFile, keyFile, err := cluster.pki.Issue(name+"-"+host, &x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		DNSNames:    []string{host},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := kubectlErr("create", "secret", "tls", name, "-n", ns, "--cert", certFile, "--key", keyFile, "--dry-run=client", "-o", "yaml")
	if err != nil {
		t.Fatalf("kubectl create secret: %v\n%s", err, out)
	}
	block, _ := pem.Decode(mustRead(t, certFile))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return out + "---\n", c.SerialNumber.String()
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// servedCert makes a TLS handshake with addr for serverName and returns the
// leaf it was served (unverified: tests check it themselves).
func servedCert(addr, serverName string) (*x509.Certificate, []*x509.Certificate, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{ServerName: serverName, InsecureSkipVerify: true}, //nolint:gosec // the test verifies the chain itself
	}
	nc, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c, _ := nc.(*tls.Conn)
	defer c.Close()
	chain := c.ConnectionState().PeerCertificates
	return chain[0], chain, nil
}

// httpsGet sends GET https://host/path to addr, verifying the server
// against roots, and returns the status and body.
func httpsGet(addr, host, path string, roots *x509.CertPool) (int, string, error) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Proto + " " + string(b), nil
}

// TestTLSSecrets: a host of spec.tls is served its Secret's certificate over
// HTTP/2, plain HTTP redirects to it, an unknown host gets the default
// certificate, a request for another host on the connection gets 421, and
// a rotated Secret is served on the next handshake without a restart.
func TestTLSSecrets(t *testing.T) {
	ns := namespace(t, "tls")
	secret, serial1 := tlsSecretYAML(t, ns, "app-tls", "app.tls.test")
	other, _ := tlsSecretYAML(t, ns, "other-tls", "other.tls.test")
	apply(t, echoWorkload(ns, "svc", "tls", 1, "v1")+secret+other+
		tlsIngress(ns, "app", "tls", "app.tls.test", "svc", "app-tls", `postern.dev/hsts: "max-age=600"`)+
		tlsIngress(ns, "other", "tls", "other.tls.test", "svc", "other-tls"))
	waitRollout(t, ns, "tls")
	p := startPostern(t, "--ingress-class", "tls", "--election-id", "tls")
	roots := x509.NewCertPool()
	roots.AddCert(cluster.pki.CA)

	eventually(t, 20*time.Second, func() error {
		leaf, _, err := servedCert(p.HTTPSAddr, "app.tls.test")
		if err != nil {
			return err
		}
		if leaf.SerialNumber.String() != serial1 {
			return fmt.Errorf("served serial %s (%s), want %s", leaf.SerialNumber, leaf.Subject.CommonName, serial1)
		}
		return nil
	})
	code, body, err := httpsGet(p.HTTPSAddr, "app.tls.test", "/", roots)
	if err != nil || code != 200 || !strings.HasPrefix(body, "HTTP/2.0 ") || !servedBy(strings.TrimPrefix(body, "HTTP/2.0 "), "tls") {
		t.Errorf("GET https://app.tls.test/ = %d %q %v, want 200 over HTTP/2 from the tls backend", code, lastLines(body, 2), err)
	}

	checkHTTPRedirect(t, p)
	checkDefaultCertificate(t, p)
	checkMisdirected(t, p, roots)

	// Rotation: a new certificate in the same Secret is served on the next
	// handshake.
	rotated, serial2 := tlsSecretYAML(t, ns, "app-tls", "app.tls.test")
	apply(t, rotated)
	start := time.Now()
	eventually(t, 20*time.Second, func() error {
		leaf, _, err := servedCert(p.HTTPSAddr, "app.tls.test")
		if err != nil {
			return err
		}
		if leaf.SerialNumber.String() != serial2 {
			return fmt.Errorf("served serial %s, want the rotated %s", leaf.SerialNumber, serial2)
		}
		return nil
	})
	t.Logf("rotated certificate served %s after the Secret update", time.Since(start).Round(time.Millisecond))
}

// checkHTTPRedirect: plain HTTP redirects the TLS host.
func checkHTTPRedirect(t *testing.T, p *Postern) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+"/a?b=c", nil)
	req.Host = "app.tls.test"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://app.tls.test/a?b=c" {
		t.Errorf("http://app.tls.test/a?b=c = %d Location %q, want 308 to https", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// checkDefaultCertificate: an unknown host gets the default (self-signed)
// certificate.
func checkDefaultCertificate(t *testing.T, p *Postern) {
	t.Helper()
	leaf, _, err := servedCert(p.HTTPSAddr, "unknown.tls.test")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Issuer.String() == cluster.pki.CA.Subject.String() {
		t.Errorf("an unknown host was served %s, a certificate of the test CA; want the default certificate", leaf.Subject)
	}
}

// checkMisdirected: another host on app.tls.test's connection gets 421.
func checkMisdirected(t *testing.T, p *Postern, roots *x509.CertPool) {
	t.Helper()
	conn, err := (&tls.Dialer{Config: &tls.Config{ServerName: "app.tls.test", RootCAs: roots, NextProtos: []string{"http/1.1"}}}).DialContext(t.Context(), "tcp", p.HTTPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: other.tls.test\r\n\r\n")
	resp421, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case err != nil:
		t.Errorf("Host other.tls.test on app.tls.test's connection: %v, want 421", err)
	case resp421.StatusCode != http.StatusMisdirectedRequest:
		t.Errorf("Host other.tls.test on app.tls.test's connection = %d, want 421", resp421.StatusCode)
	}
	if err == nil {
		resp421.Body.Close()
	}
	conn.Close()
}

// pebble is a running pebble ACME server and its challenge test server,
// which answers pebble's DNS queries with the address postern listens on.
type pebble struct {
	directory string // the ACME directory URL
	caBundle  string // PEM file of the CA that signed pebble's own HTTPS certificate
	mgmt      string // management address (issuing roots)
	proc      *proc
}

// validated fails t unless pebble's log shows an authorization made valid
// by a challenge of type typ. Pebble logs its http-01 attempts ("Attempting
// to validate w/ HTTP") and nothing for tls-alpn-01, so a valid
// authorization without an HTTP attempt was validated by tls-alpn-01.
func (pb *pebble) validated(t *testing.T, typ string) {
	t.Helper()
	log := pb.proc.Out.String()
	valid := strings.Contains(log, "set VALID by completed challenge")
	overHTTP := strings.Contains(log, "Attempting to validate w/ HTTP")
	if !valid || overHTTP != (typ == "http-01") {
		t.Errorf("pebble's log shows no authorization validated by %s (valid %v, http-01 attempted %v):\n%s", typ, valid, overHTTP, lastLines(log, 30))
	}
}

// startPebble starts pebble-challtestsrv (DNS: every name resolves to ip)
// and pebble, which validates challenges on ip's httpPort (http-01) and
// tlsPort (tls-alpn-01).
func startPebble(t *testing.T, ip string, httpPort, tlsPort int) *pebble {
	t.Helper()
	for _, bin := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (the Makefile installs Debian's pebble package): %v", bin, err)
		}
	}
	dir := t.TempDir()
	certFile, keyFile, err := cluster.pki.Issue("pebble", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "pebble"},
		DNSNames:    []string{"localhost", "pebble"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePortN())
	cts, err := startProc("pebble-challtestsrv", "pebble-challtestsrv",
		"-defaultIPv4", ip, "-defaultIPv6", "", "-dns01", dnsAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", freePortN()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cts.Stop)
	pb := &pebble{
		caBundle: cluster.pki.CACert,
		mgmt:     fmt.Sprintf("127.0.0.1:%d", freePortN()),
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePortN())
	pb.directory = "https://" + listen + "/dir"
	config := fmt.Sprintf(`{"pebble": {"listenAddress": %q, "managementListenAddress": %q,
  "certificate": %q, "privateKey": %q, "httpPort": %d, "tlsPort": %d,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}`,
		listen, pb.mgmt, certFile, keyFile, httpPort, tlsPort)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// No random sleeps before validation, and no random nonce rejections:
	// the test is about Postern, not about the client's retry logic.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	pp, err := startProc("pebble", "pebble", "-config", cfgFile, "-dnsserver", dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	pb.proc = pp
	t.Cleanup(func() {
		pp.Stop()
		if t.Failed() {
			t.Logf("--- pebble log tail ---\n%s", pp.Tail(40))
		}
	})
	eventually(t, 20*time.Second, func() error {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(context.Background(), "tcp", listen)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return pb
}

// roots returns pebble's issuing root (it makes a new one at every start).
func (pb *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // pebble's management interface, on loopback
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+pb.mgmt+"/roots/0", nil)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("pebble's root is not PEM: %q", data)
	}
	return pool
}

// acmeIngress is an Ingress annotated for ACME, for host.
func acmeIngress(ns, class, host string) string {
	return tlsIngress(ns, "acme", class, host, "svc", "unused-acme-tls", `postern.dev/acme: "true"`)
}

// waitIssued waits until addr serves host a certificate that verifies
// against roots, and returns it.
func waitIssued(t *testing.T, addr, host string, roots *x509.CertPool, timeout time.Duration) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	eventually(t, timeout, func() error {
		l, chain, err := servedCert(addr, host)
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := l.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
			return fmt.Errorf("served %s issued by %s: %w", l.Subject, l.Issuer, err)
		}
		leaf = l
		return nil
	})
	return leaf
}

// TestACMEAcrossReplicas: the leader obtains a certificate from pebble
// (tls-alpn-01 on its HTTPS listener), serves it and stores it in a Secret;
// a second replica serves the same certificate without ordering; a restart
// orders nothing new.
func TestACMEAcrossReplicas(t *testing.T) {
	const ip1, ip2 = "192.0.2.70", "192.0.2.72"
	pb := startPebble(t, ip1, 5002, 5001)
	ns := namespace(t, "acme")
	host := "secure.postern.test"
	apply(t, echoWorkload(ns, "svc", "acme", 1, "v1")+acmeIngress(ns, "acme", host))
	waitRollout(t, ns, "acme")

	args := func(ip string) []string {
		return []string{"--ingress-class", "acme", "--election-id", "acme", "--namespace", ns,
			"--http-addr", ip + ":5002", "--https-addr", ip + ":5001",
			"--acme-directory", pb.directory, "--acme-ca-bundle", pb.caBundle, "--acme-email", "ops@postern.test"}
	}
	p1 := startPostern(t, args(ip1)...)
	p1.HTTPAddr, p1.HTTPSAddr = ip1+":5002", ip1+":5001"
	roots := pb.roots(t)
	start := time.Now()
	leaf := waitIssued(t, p1.HTTPSAddr, host, roots, 90*time.Second)
	t.Logf("certificate for %s issued and served %s after start (serial %s)", host, time.Since(start).Round(time.Millisecond), leaf.SerialNumber)
	pb.validated(t, "tls-alpn-01")
	code, body, err := httpsGet(p1.HTTPSAddr, host, "/", roots)
	_, echoed, found := strings.Cut(body, "backend: ")
	if err != nil || code != 200 || !found || !servedBy("backend: "+echoed, "acme") {
		t.Errorf("GET https://%s/ = %d %q %v", host, code, lastLines(body, 2), err)
	}

	// The certificate is in a cache Secret of Postern's namespace.
	certVersion := func() string {
		out := kubectl(t, "get", "secrets", "-n", ns, "-l", "postern.dev/acme-cache=true",
			"-o", `jsonpath={range .items[*]}{.data.key} {.metadata.resourceVersion}{"\n"}{end}`)
		var keys []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, rv, _ := strings.Cut(line, " ")
			key := decodeB64(t, k)
			if key == host {
				return rv
			}
			keys = append(keys, key)
		}
		t.Fatalf("ACME cache Secrets hold %q, want an entry for %s", keys, host)
		return ""
	}
	stored := certVersion()

	// A second replica (not the leader) serves the same certificate.
	p2 := startPostern(t, args(ip2)...)
	p2.HTTPSAddr = ip2 + ":5001"
	if got := waitIssued(t, p2.HTTPSAddr, host, roots, 30*time.Second); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("the second replica serves serial %s, want the leader's %s", got.SerialNumber, leaf.SerialNumber)
	}

	// A restart orders nothing new: the same certificate comes back.
	p1.Stop()
	p1b := startPostern(t, args(ip1)...)
	p1b.HTTPSAddr = ip1 + ":5001"
	if got := waitIssued(t, p1b.HTTPSAddr, host, roots, 30*time.Second); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after a restart serial %s is served, want the stored %s", got.SerialNumber, leaf.SerialNumber)
	}
	if v := certVersion(); v != stored {
		t.Errorf("the stored certificate changed (resourceVersion %s, then %s): a replica ordered again", stored, v)
	}
}

// TestACMEStandaloneHTTP01: standalone mode with a cache folder, and pebble
// validating over http-01 only (its tls-alpn-01 port has nothing behind it,
// so the ACME client falls back to http-01 on the HTTP listener).
func TestACMEStandaloneHTTP01(t *testing.T) {
	const ip = "192.0.2.80"
	pb := startPebble(t, ip, 5002, 5011)
	startEcho(t, "acme-standalone", "192.0.2.81:9000")
	host := "plain.postern.test"
	dir := t.TempDir()
	manifests := service("default", "svc", "192.0.2.81") + strings.Replace(acmeIngress("default", "standalone", host), "ingressClassName: standalone", "ingressClassName: postern", 1)
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Postern{HTTPAddr: ip + ":5002", HTTPSAddr: ip + ":5443", MetricsAddr: fmt.Sprintf("127.0.0.1:%d", freePortN())}
	var err error
	p.proc, err = startProc("postern", env.postern, "--manifests", dir, "--http-addr", p.HTTPAddr, "--https-addr", p.HTTPSAddr,
		"--metrics-addr", p.MetricsAddr, "--acme-directory", pb.directory, "--acme-ca-bundle", pb.caBundle,
		"--acme-cache-dir", filepath.Join(t.TempDir(), "acme"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- postern log tail ---\n%s", p.Tail(60))
		}
	})
	leaf := waitIssued(t, p.HTTPSAddr, host, pb.roots(t), 90*time.Second)
	t.Logf("certificate for %s issued over http-01 (serial %s)", host, leaf.SerialNumber)
	pb.validated(t, "http-01")
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return string(b)
}
