package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/postern-dev/postern/proxy/balancer"
)

// BenchmarkForwardedHeaders measures the handler on requests that carry
// forwarding headers of their own, from a peer that is not trusted: the
// headers are replaced, whatever they say.
func BenchmarkForwardedHeaders(b *testing.B) {
	benchForwarded(b, context.Background())
}

// benchForwarded serves a request with X-Forwarded-For and
// X-Forwarded-Proto from 192.0.2.1 in ctx.
func benchForwarded(b *testing.B, ctx context.Context) {
	h := New(Options{Transport: fakeTransport{}})
	h.Swap(benchTable(balancer.PolicyRoundRobin, "10.0.0.1:8080"))
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://app.example.com/api/v1/users?id=42", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}
