package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/pipeline"
)

// BenchmarkForwardedHeaders measures the handler on requests that carry
// forwarding headers of their own, from a peer that is not trusted: the
// headers are replaced, whatever they say.
func BenchmarkForwardedHeaders(b *testing.B) {
	benchForwarded(b, nil)
}

// benchForwarded serves a request with X-Forwarded-For and
// X-Forwarded-Proto from 192.0.2.1, on a listener that trusts tp.
func benchForwarded(b *testing.B, tp *pipeline.TrustedProxies) {
	h := New(Options{Transport: fakeTransport{}})
	h.Swap(benchTable(balancer.PolicyRoundRobin, "10.0.0.1:8080"))
	l := netHTTP{h: h, l: h.pipeline.Listener(pipeline.ListenerOptions{Trusted: tp})}
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://app.example.com/api/v1/users?id=42", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		l.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}
