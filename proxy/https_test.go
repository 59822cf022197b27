package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testPKI is a CA and server certificates it signed, by host name.
type testPKI struct {
	pool  *x509.CertPool
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	certs map[string]*tls.Certificate
}

func newTestPKI(t testing.TB, hosts ...string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{pool: x509.NewCertPool(), ca: ca, key: key, certs: map[string]*tls.Certificate{}}
	p.pool.AddCert(ca)
	for i, h := range hosts {
		p.certs[h] = p.issue(t, int64(i+2), h)
	}
	return p
}

func (p *testPKI) issue(t testing.TB, serial int64, names ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverConfig chooses certificates by SNI from p, "default" otherwise.
func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := p.certs[hello.ServerName]; c != nil {
				return c, nil
			}
			return p.certs["default"], nil
		},
	}
}

// startTLSServer serves h with ServeTLS and returns its address and the
// number of handshakes observed (with errors counted separately).
func startTLSServer(t *testing.T, e engine, h *Handler, cfg *tls.Config) (addr string, ok, failed *atomic.Int64) {
	t.Helper()
	ln := listen(t)
	s := NewServer(h, e.opts(ServerOptions{}))
	ok, failed = new(atomic.Int64), new(atomic.Int64)
	runServer(t, s, func() error {
		return s.ServeTLS(ln, TLSOptions{Config: cfg, HandshakeTimeout: time.Second, ObserveHandshake: func(_ tls.ConnectionState, err error) {
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}})
	})
	return ln.Addr().String(), ok, failed
}

// dialTLS opens a TLS connection to addr with cfg, closed when the test
// ends, its reads and writes bounded by testTimeout.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*tls.Conn)
}

func tlsClient(pool *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// dialTo makes a client connect to addr whatever the URL's host.
func dialTo(c *http.Client, addr string) *http.Client {
	tr := c.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return c
}

func TestServeTLSHTTP1AndHTTP2(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		pki := newTestPKI(t, "app.example.com", "default")
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Forwarded-Proto-Seen", r.Header.Get("X-Forwarded-Proto"))
			_, _ = io.WriteString(w, r.Proto)
		})
		h := New(Options{})
		t.Cleanup(h.CloseIdleConnections)
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", b)))}, nil))
		addr, ok, _ := startTLSServer(t, e, h, pki.serverConfig())

		for _, h2 := range []bool{false, true} {
			c := dialTo(tlsClient(pki.pool, h2), addr)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://app.example.com/", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("h2=%v: %v", h2, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantProto := "HTTP/1.1"
			if h2 {
				wantProto = "HTTP/2.0"
			}
			if resp.StatusCode != http.StatusOK || resp.Proto != wantProto {
				t.Errorf("h2=%v: %d %s, want 200 %s", h2, resp.StatusCode, resp.Proto, wantProto)
			}
			if string(body) != "HTTP/1.1" || resp.Header.Get("X-Forwarded-Proto-Seen") != "https" {
				t.Errorf("h2=%v: backend saw %q with X-Forwarded-Proto %q, want HTTP/1.1 and https", h2, body, resp.Header.Get("X-Forwarded-Proto-Seen"))
			}
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "app.example.com" {
				t.Errorf("h2=%v: served certificate %v, want app.example.com's", h2, resp.TLS)
			}
		}
		if ok.Load() != 2 {
			t.Errorf("observed %d good handshakes, want 2", ok.Load())
		}
	})
}

// TestServeTLSFramingGuard: HTTP/1.1 over TLS goes through the same
// smuggling guard as plain HTTP.
func TestServeTLSFramingGuard(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		pki := newTestPKI(t, "default")
		b := newBackend(t, "b", nil)
		h := New(Options{})
		t.Cleanup(h.CloseIdleConnections)
		h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
		addr, _, _ := startTLSServer(t, e, h, pki.serverConfig())

		c := dialTLS(t, addr, &tls.Config{RootCAs: pki.pool, ServerName: "default", NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("CL+TE over TLS = %d, want 400", resp.StatusCode)
		}
		if n := b.hits.Load(); n != 0 {
			t.Errorf("the backend got %d requests, want none", n)
		}
	})
}

func TestServeTLSHandshakeFailures(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		pki := newTestPKI(t, "default")
		addr, _, failed := startTLSServer(t, e, New(Options{}), pki.serverConfig())

		// Old TLS version: refused.
		if c, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}}).DialContext(t.Context(), "tcp", addr); err == nil { //nolint:gosec // the test offers an old version on purpose
			c.Close()
			t.Error("a TLS 1.1 handshake succeeded")
		}
		// A client that says nothing is cut off by the handshake timeout.
		raw, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := raw.Read(make([]byte, 1)); err == nil {
			t.Error("a silent client got data instead of a closed connection")
		}
		deadline := time.Now().Add(testTimeout)
		for failed.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if failed.Load() != 2 {
			t.Errorf("observed %d failed handshakes, want 2", failed.Load())
		}
	})
}

func tlsTable(be *route.Backend) *route.Table {
	tbl := route.NewTable([]*route.VirtualHost{vhost("a.example.com", prefix("/", be)), vhost("", prefix("/", be))}, nil)
	return tbl.WithTLS([]*route.TLSHost{
		{Host: "a.example.com", Redirect: true, HSTS: "max-age=60"},
		{Host: "acme.example.com", ACME: true, Redirect: true},
		{Host: "noredirect.example.com"},
	})
}

// TestPlainHTTPRedirects covers the plain listener's redirect to HTTPS
// and ACME challenges, on every engine.
func TestPlainHTTPRedirects(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("a.example.com", prefix("/", backendOf("b", "", b))),
			vhost("", prefix("/", backendOf("b", "", b))),
		}, nil).WithTLS([]*route.TLSHost{
			{Host: "a.example.com", Redirect: true, HSTS: "max-age=60"},
			{Host: "acme.example.com", ACME: true, Redirect: true},
			{Host: "noredirect.example.com"},
		})
		acme := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Acme", r.URL.Path)
			w.WriteHeader(298)
		})
		h := New(Options{})
		h.Swap(tbl)
		t.Cleanup(h.CloseIdleConnections)
		addrs := map[int]string{}
		for _, port := range []int{0, 443, 8443} {
			addrs[port], _ = startServer(t, e, h, ServerOptions{ACME: acme, HTTPSPort: port})
		}
		tests := []struct {
			name, method, target, host string
			port                       int
			want                       int
			location                   string
		}{
			{"tls host", "GET", "/p?q=1", "a.example.com", 0, 308, "https://a.example.com/p?q=1"},
			{"tls host with port", "POST", "/p", "A.example.com:8080", 0, 308, "https://a.example.com/p"},
			{"custom https port", "GET", "/", "a.example.com", 8443, 308, "https://a.example.com:8443/"},
			{"port 443 left out", "GET", "/", "a.example.com", 443, 308, "https://a.example.com/"},
			{"absolute-form", "GET", "http://a.example.com/x?y", "a.example.com", 0, 308, "https://a.example.com/x?y"},
			{"redirect off", "GET", "/", "noredirect.example.com", 0, 299, ""},
			{"not a tls host", "GET", "/", "b.example.com", 0, 299, ""},
			{"acme challenge", "GET", "/.well-known/acme-challenge/tok", "acme.example.com", 0, 298, ""},
			{"challenge path on a non-acme host", "GET", "/.well-known/acme-challenge/tok", "a.example.com", 0, 308, "https://a.example.com/.well-known/acme-challenge/tok"},
			{"acme host other path", "GET", "/x", "acme.example.com", 0, 308, "https://acme.example.com/x"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", tc.method, tc.target, tc.host)
				resps, _, _ := exchange(t, addrs[tc.port], req, 1)
				if len(resps) != 1 {
					t.Fatalf("%d responses, want 1", len(resps))
				}
				r := resps[0]
				if r.StatusCode != tc.want || r.Header.Get("Location") != tc.location {
					t.Errorf("%s %s (Host %s) = %d Location %q, want %d %q", tc.method, tc.target, tc.host, r.StatusCode, r.Header.Get("Location"), tc.want, tc.location)
				}
				if tc.want == 298 && r.Header.Get("X-Acme") != "/.well-known/acme-challenge/tok" {
					t.Errorf("the ACME handler's answer came without its header: %v", r.Header)
				}
				if r.Header.Get(pipeline.HeaderRequestID) == "" {
					t.Errorf("no request ID on the answer")
				}
			})
		}
	})
}

// TestSecureHTTPMisdirectedAndHSTS covers the TLS listener's policies on
// every engine: 421 for a Host the connection's certificate does not
// cover, HSTS for the hosts that ask for it.
func TestSecureHTTPMisdirectedAndHSTS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })
		h := New(Options{})
		h.Swap(tlsTable(backendOf("b", "", b)))
		t.Cleanup(h.CloseIdleConnections)
		pki := newTestPKI(t, "a.example.com", "noredirect.example.com")
		covers := func(sni, host string) bool { return sni == route.NormalizeHost(host) }
		ln := listen(t)
		s := NewServer(h, e.opts(ServerOptions{}))
		runServer(t, s, func() error { return s.ServeTLS(ln, TLSOptions{Config: pki.serverConfig(), Covers: covers}) })
		tests := []struct {
			sni, host string
			want      int
			hsts      string
		}{
			{"a.example.com", "a.example.com", 299, "max-age=60"},
			{"a.example.com", "A.EXAMPLE.COM:443", 299, "max-age=60"},
			{"a.example.com", "noredirect.example.com", 421, ""},
			{"noredirect.example.com", "noredirect.example.com", 299, ""},
		}
		for _, tc := range tests {
			c := dialTLS(t, ln.Addr().String(), &tls.Config{RootCAs: pki.pool, ServerName: tc.sni, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || resp.Header.Get("Strict-Transport-Security") != tc.hsts {
				t.Errorf("SNI %s Host %s = %d HSTS %q, want %d %q", tc.sni, tc.host, resp.StatusCode, resp.Header.Get("Strict-Transport-Security"), tc.want, tc.hsts)
			}
		}
	})
}

// TestBackendProtocols proxies to an HTTPS backend and to an h2c backend.
func TestBackendProtocols(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		proto := func(w http.ResponseWriter, r *http.Request) {
			tlsOn := "plain"
			if r.TLS != nil {
				tlsOn = "tls"
			}
			_, _ = io.WriteString(w, r.Proto+" "+tlsOn)
		}
		httpsBackend := httptest.NewTLSServer(http.HandlerFunc(proto))
		t.Cleanup(httpsBackend.Close)
		h2cBackend := httptest.NewUnstartedServer(http.HandlerFunc(proto))
		h2cBackend.Config.Protocols = new(http.Protocols)
		h2cBackend.Config.Protocols.SetUnencryptedHTTP2(true)
		h2cBackend.Start()
		t.Cleanup(h2cBackend.Close)
		h2sBackend := httptest.NewUnstartedServer(http.HandlerFunc(proto))
		h2sBackend.EnableHTTP2 = true
		h2sBackend.StartTLS()
		t.Cleanup(h2sBackend.Close)

		backend := func(name string, p route.Protocol, s *httptest.Server) *route.Backend {
			return &route.Backend{Key: "ns/" + name, Protocol: p, Endpoints: []route.Endpoint{{Address: s.Listener.Addr().String()}}}
		}
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("https.example.com", prefix("/", backend("https", route.ProtocolHTTPS, httpsBackend))),
			vhost("h2c.example.com", prefix("/", backend("h2c", route.ProtocolH2C, h2cBackend))),
			vhost("grpc.example.com", prefix("/", backend("grpc", route.ProtocolGRPC, h2cBackend))),
			vhost("grpcs.example.com", prefix("/", backend("grpcs", route.ProtocolGRPCS, h2sBackend))),
		}, nil)
		addr, _ := startProxy(t, e, tbl, Options{})
		for host, want := range map[string]string{
			"https.example.com": "HTTP/1.1 tls",
			"h2c.example.com":   "HTTP/2.0 plain",
			"grpc.example.com":  "HTTP/2.0 plain",
			"grpcs.example.com": "HTTP/2.0 tls",
		} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)
			req.Host = host
			resp, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), want) {
				t.Errorf("%s: %d %q, want 200 %q", host, resp.StatusCode, body, want)
			}
		}
	})
}

// An HTTP/2 request whose Host field names another host than its
// :authority is malformed (RFC 9113 §8.3.1): 400, and no backend sees it.
// The same host in another case, or with a port, is the same host.
func TestHTTP2HostMustMatchAuthority(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		other := newBackend(t, "other", nil)
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{
			vhost("app.test", prefix("/", backendOf("b", "", b))),
			vhost("other.test", prefix("/", backendOf("other", "", other))),
		}, nil))
		t.Cleanup(h.CloseIdleConnections)
		pki := newTestPKI(t, "app.test")
		addr, _, _ := startTLSServer(t, e, h, pki.serverConfig())
		for _, tc := range []struct {
			hosts []string
			code  int
		}{
			{nil, http.StatusOK},
			{[]string{"APP.test"}, http.StatusOK},
			{[]string{"app.test:443"}, http.StatusOK},
			{[]string{"other.test"}, http.StatusBadRequest},
			{[]string{"app.test", "other.test"}, http.StatusBadRequest},
		} {
			if got := h2Status(t, addr, pki, "app.test", tc.hosts); got != tc.code {
				t.Errorf("Host %q with :authority app.test: status %d, want %d", tc.hosts, got, tc.code)
			}
		}
		if n := other.hits.Load(); n != 0 {
			t.Errorf("the other host's backend got %d requests, want none", n)
		}
		if n := b.hits.Load(); n != 3 {
			t.Errorf("app.test's backend got %d requests, want 3", n)
		}
	})
}

// h2Status sends one GET over a new HTTP/2 connection, with the Host
// fields given beside :authority (which net/http's client never sends),
// and returns the response's status.
func h2Status(t *testing.T, addr string, pki *testPKI, authority string, hosts []string) int {
	t.Helper()
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: authority, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	c := dialTLS(t, addr, cfg)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: "/"},
	}
	for _, h := range hosts {
		fields = append(fields, hpack.HeaderField{Name: "host", Value: h})
	}
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			got, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range got {
				if hf.Name == ":status" {
					code, _ := strconv.Atoi(hf.Value)
					return code
				}
			}
			t.Fatalf("response head without :status: %v", got)
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("connection ended: %v", f.ErrCode)
		}
	}
}
