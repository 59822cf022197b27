package proxy

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// observedOptions are Options with metrics on a registry of their own and
// an access log of every request to io.Discard, closed when b ends.
func observedOptions(b *testing.B) Options {
	al := observe.NewAccessLog(observe.AccessLogOptions{Output: io.Discard, Sample: 1, Registerer: prometheus.NewRegistry()})
	b.Cleanup(func() { _ = al.Close(context.Background()) })
	return Options{Metrics: observe.NewMetrics(prometheus.NewRegistry()), AccessLog: al}
}

// TestObserveCountsEachRequestOnce covers the listener's policies: a
// redirect the pipeline answers itself is counted, and a request it
// forwards is counted once, with its route's labels. The redirect to
// HTTPS is made by the route (as ingress-nginx makes it in the location),
// so it carries the route's labels too.
func TestObserveCountsEachRequestOnce(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		m := observe.NewMetrics(reg)
		b := newBackend(t, "web", nil)
		h := New(Options{Metrics: m})
		t.Cleanup(h.CloseIdleConnections)
		h.Swap(route.NewTable([]*route.VirtualHost{
			vhost("app.test", shopRoute("/", backendOf("web", "", b))),
			vhost("secure.test", shopRoute("/", backendOf("web", "", b))),
		}, nil).WithTLS([]*route.TLSHost{{Host: "secure.test", Redirect: true}}))
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		if resp, _ := get(t, c, addr, "app.test", "/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("app.test = %d", resp.StatusCode)
		}
		resp, _ := get(t, c, addr, "secure.test", "/")
		if resp.StatusCode != http.StatusPermanentRedirect || !generatedID.MatchString(resp.Header.Get(pipeline.HeaderRequestID)) {
			t.Fatalf("secure.test = %d with X-Request-ID %q, want 308 with an ID", resp.StatusCode, resp.Header.Get(pipeline.HeaderRequestID))
		}
		want := map[string]float64{
			reqLabels("ns", "shop", "web", "GET", "200"): 1,
			reqLabels("ns", "shop", "web", "GET", "308"): 1,
		}
		waitFor(t, "2 requests counted", func() bool {
			var n float64
			for _, s := range gather(t, reg, "postern_proxy_requests_total") {
				n += s.value
			}
			return n >= 2
		})
		if d := diffMaps(values(gather(t, reg, "postern_proxy_requests_total")), want); d != "" {
			t.Errorf("postern_proxy_requests_total (-want +got):\n%s", d)
		}
	})
}

// BenchmarkObserve measures what observing adds to a request, without the
// proxying: the request ID, then recording the metrics and queueing the
// access-log line. drops/op is the share of lines the writer could not
// keep up with (the benchmark makes lines faster than any real traffic).
func BenchmarkObserve(b *testing.B) {
	be := &route.Backend{Key: "ns/api:80", Namespace: "ns", Service: "api", Endpoints: []route.Endpoint{{Address: "10.0.0.1:8080"}}}
	rt := shopRoute("/", be)
	tbl := route.NewTable([]*route.VirtualHost{vhost("app.example.com", rt)}, nil)
	for _, mode := range []string{"request-id-only", "metrics", "access-log", "metrics+access-log"} {
		for _, parallel := range []bool{false, true} {
			name := mode
			if parallel {
				name += "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				var opts Options
				var al *observe.AccessLog
				if strings.Contains(mode, "metrics") {
					opts.Metrics = observe.NewMetrics(prometheus.NewRegistry())
				}
				if strings.Contains(mode, "access-log") {
					al = observe.NewAccessLog(observe.AccessLogOptions{Output: io.Discard, Sample: 1})
					defer func() { _ = al.Close(context.Background()) }()
					opts.AccessLog = al
				}
				h := New(opts)
				h.Swap(tbl)
				one := func(req *http.Request, w http.ResponseWriter) {
					ob := h.begin(w, req)
					ob.x.Route, ob.x.Backend = rt, be
					ob.st.endpoint = &be.Endpoints[0]
					ob.st.upstream, ob.st.attempted = time.Millisecond, true
					ob.WriteHeader(http.StatusOK)
					h.end(ob)
				}
				newReq := func() *http.Request {
					r, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://a.test/", nil)
					if err != nil {
						b.Fatal(err)
					}
					return r
				}
				b.ReportAllocs()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						req, w := newReq(), &discardWriter{h: make(http.Header)}
						for pb.Next() {
							one(req, w)
						}
					})
				} else {
					req, w := newReq(), &discardWriter{h: make(http.Header)}
					for b.Loop() {
						one(req, w)
					}
				}
				if al != nil {
					b.ReportMetric(float64(al.Dropped())/float64(b.N), "drops/op")
				}
			})
		}
	}
}

// TestObservedOverHTTPS covers the HTTPS listener: HTTP/1.1 and HTTP/2
// connections are counted, and their requests counted and logged.
func TestObservedOverHTTPS(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)
	var out syncBuffer
	al := observe.NewAccessLog(observe.AccessLogOptions{Output: &out, Sample: 1})
	b := newBackend(t, "web", nil)
	h := New(Options{Metrics: m, AccessLog: al})
	t.Cleanup(h.CloseIdleConnections)
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", shopRoute("/", backendOf("web", "", b)))}, nil))
	pki := newTestPKI(t, "app.test")
	ln := listen(t)
	s := NewServer(h, ServerOptions{Metrics: m})
	done := make(chan error, 1)
	go func() { done <- s.ServeTLS(ln, TLSOptions{Config: pki.serverConfig()}) }()

	clients := []*http.Client{dialTo(tlsClient(pki.pool, false), ln.Addr().String()), dialTo(tlsClient(pki.pool, true), ln.Addr().String())}
	for _, c := range clients {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://app.test/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := do(t, c, req)
		if resp.StatusCode != http.StatusOK || resp.Header.Get(pipeline.HeaderRequestID) == "" {
			t.Fatalf("GET over TLS = %d, X-Request-ID %q", resp.StatusCode, resp.Header.Get(pipeline.HeaderRequestID))
		}
	}
	if got := scalar(t, reg, "postern_proxy_open_connections"); got != 2 {
		t.Errorf("open_connections = %g with an HTTP/1.1 and an HTTP/2 connection, want 2", got)
	}
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	waitFor(t, "open_connections back to 0", func() bool { return scalar(t, reg, "postern_proxy_open_connections") == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	closeLog(t, al)
	if got := gather(t, reg, "postern_proxy_requests_total")[reqLabels("ns", "shop", "web", "GET", "200")].value; got != 2 {
		t.Errorf("requests_total = %g, want 2", got)
	}
	var protos []string
	for _, l := range out.lines(t) {
		protos = append(protos, l["protocol"].(string))
	}
	slices.Sort(protos)
	if !slices.Equal(protos, []string{"HTTP/1.1", "HTTP/2.0"}) {
		t.Errorf("access-log protocols %q, want HTTP/1.1 and HTTP/2.0", protos)
	}
}
