package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/route"
)

// discardWriter is the cheapest http.ResponseWriter: the benchmarks
// measure the handler, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// fakeTransport answers every request at once with 200 and a short body.
// It allocates the Response and its body reader (2 allocations per
// request that belong to it, not to the handler).
type fakeTransport struct{}

func (fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Body:          io.NopCloser(strings.NewReader("hello")),
		ContentLength: 5,
		Request:       r,
	}, nil
}

// benchTable routes app.example.com/api to a backend with 3 endpoints
// under policy; addr is their address (the same one three times is fine).
func benchTable(policy, addr string) *route.Table {
	be := &route.Backend{Key: "ns/api:80", Service: "api", Balancer: policy}
	for range 3 {
		be.Endpoints = append(be.Endpoints, route.Endpoint{Address: addr})
	}
	return route.NewTable([]*route.VirtualHost{
		vhost("app.example.com", prefix("/", be), prefix("/api", be)),
	}, nil)
}

// BenchmarkServeHTTP measures the handler; the .../observed variants with
// metrics and an access log (every request logged, to io.Discard), the
// others without (request IDs are always on).
func BenchmarkServeHTTP(b *testing.B) {
	for _, policy := range []string{balancer.PolicyRoundRobin, balancer.PolicyLeastRequest, balancer.PolicyRoundRobin + "/observed"} {
		b.Run("fake-transport/"+policy, func(b *testing.B) {
			opts := Options{Transport: fakeTransport{}}
			if p, ok := strings.CutSuffix(policy, "/observed"); ok {
				policy, opts = p, observedOptions(b)
				opts.Transport = fakeTransport{}
			}
			h := New(opts)
			h.Swap(benchTable(policy, "10.0.0.1:8080"))
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://app.example.com/api/v1/users?id=42", nil)
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello")
	}))
	defer backend.Close()
	addr := backend.Listener.Addr().String()

	for _, name := range []string{"local-backend", "local-backend/observed"} {
		b.Run(name, func(b *testing.B) {
			opts := Options{}
			if strings.HasSuffix(name, "/observed") {
				opts = observedOptions(b)
			}
			h := New(opts)
			defer h.CloseIdleConnections()
			h.Swap(benchTable("", addr))
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://app.example.com/api/v1/users?id=42", nil)
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
	for _, name := range []string{"local-backend/parallel", "local-backend/observed/parallel"} {
		b.Run(name, func(b *testing.B) {
			parallelBench(b, addr, strings.Contains(name, "/observed"))
		})
	}
}

func parallelBench(b *testing.B, addr string, observed bool) {
	opts := Options{}
	if observed {
		opts = observedOptions(b)
	}
	h := New(opts)
	defer h.CloseIdleConnections()
	h.Swap(benchTable("", addr))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://app.example.com/api/v1/users?id=42", nil)
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
}
