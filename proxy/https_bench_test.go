package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// BenchmarkHTTPS measures requests through the HTTPS listener to a local
// backend, over keep-alive HTTP/1.1 and over HTTP/2, from parallel clients
// (run with -cpu to vary the parallelism). The TLS handshake happens once
// per connection; see BenchmarkTLSHandshake for its cost.
func BenchmarkHTTPS(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		name := "http1.1"
		if h2 {
			name = "h2"
		}
		b.Run(name, func(b *testing.B) {
			_, client := benchHTTPSProxy(b, h2)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://app.example.com/", nil)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkTLSHandshake measures full handshakes (no resumption) with the
// HTTPS listener, one new connection each, ECDSA P-256 certificate.
func BenchmarkTLSHandshake(b *testing.B) {
	addr, _ := benchHTTPSProxy(b, false)
	pki := benchPKI
	cfg := &tls.Config{ServerName: "app.example.com", RootCAs: pki.pool, MinVersion: tls.VersionTLS12}
	b.ResetTimer()
	for b.Loop() {
		c, err := (&tls.Dialer{Config: cfg}).DialContext(context.Background(), "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

var benchPKI *testPKI

func benchHTTPSProxy(b *testing.B, h2 bool) (string, *http.Client) {
	b.Helper()
	if benchPKI == nil {
		benchPKI = newTestPKI(b, "app.example.com", "default")
	}
	backend := newBackend(b, "b", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })
	h := New(Options{})
	b.Cleanup(h.CloseIdleConnections)
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", backend)))}, nil))
	ln := listen(b)
	s := NewServer(h, ServerOptions{})
	go func() { _ = s.ServeTLS(ln, TLSOptions{Config: benchPKI.serverConfig()}) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	c := dialTo(tlsClient(benchPKI.pool, h2), ln.Addr().String())
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.Cleanup(c.CloseIdleConnections)
	return ln.Addr().String(), c
}
