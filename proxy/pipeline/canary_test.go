package pipeline

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// canaryListener is a listener over canary.test, whose routes each have
// the mainline endpoint 192.0.2.10 and a canary (192.0.2.20) by the
// rules of c, one route per path.
func canaryListener(t testing.TB, canaries map[string]*route.Canary) *Listener {
	t.Helper()
	main := &route.Backend{Key: "ns/main:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	can := &route.Backend{Key: "ns/canary:80", Endpoints: []route.Endpoint{{Address: "192.0.2.20:80"}}}
	var routes []*route.Route
	for path, c := range canaries {
		routes = append(routes, &route.Route{
			Match:    route.Match{PathType: route.PathExact, Path: path},
			Backends: []route.WeightedBackend{{Backend: main, Weight: 1}, {Backend: can}},
			Canary:   c,
			Policy:   &route.Policy{MaxBodySize: 10},
		})
	}
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("canary.test", routes)}, nil))
	return p.Listener(ListenerOptions{})
}

// TestCanary ports ingress-nginx's canary cases (e2e annotations/canary.go,
// reference 2.10): the header first ("always", "never", an exact value,
// a pattern, and a pattern RE2 cannot compile sending everything with the
// header to the mainline), then the cookie, then the weight; a value that
// decides nothing falls through.
func TestCanary(t *testing.T) {
	t.Parallel()
	l := canaryListener(t, map[string]*route.Canary{
		"/header":  {Header: "X-Canary", WeightTotal: 100},
		"/value":   {Header: "X-Canary", HeaderValue: "DoCanary", Cookie: "Canary", WeightTotal: 100},
		"/pattern": {Header: "X-Canary", HeaderPattern: "^Do[A-Z]", Cookie: "Canary", WeightTotal: 100},
		"/bad":     {Header: "X-Canary", HeaderPattern: "[][**da?$&*", Cookie: "Canary", WeightTotal: 100},
		"/cookie":  {Cookie: "Canary", WeightTotal: 100},
		"/never":   {Header: "X-Canary", Cookie: "Canary", Weight: 100, WeightTotal: 100},
		"/w0":      {Weight: 0, WeightTotal: 100},
		"/w100":    {Weight: 100, WeightTotal: 100},
		"/w1000":   {Weight: 1000, WeightTotal: 1000},
	})
	const main, can = "192.0.2.10:80", "192.0.2.20:80"
	cases := []struct {
		name, path string
		header     http.Header
		want       string
	}{
		{"header always", "/header", http.Header{"X-Canary": {"always"}}, can},
		{"header never", "/header", http.Header{"X-Canary": {"never"}}, main},
		{"header other value", "/header", http.Header{"X-Canary": {"badvalue"}}, main},
		{"no header", "/header", nil, main},
		{"header value", "/value", http.Header{"X-Canary": {"DoCanary"}}, can},
		{"header value is case-sensitive", "/value", http.Header{"X-Canary": {"docanary"}}, main},
		{"header value mismatch falls through to the cookie", "/value", http.Header{"X-Canary": {"never"}, "Cookie": {"Canary=always"}}, can},
		{"pattern", "/pattern", http.Header{"X-Canary": {"DoCanary"}}, can},
		{"pattern mismatch falls through", "/pattern", http.Header{"X-Canary": {"nope"}, "Cookie": {"Canary=always"}}, can},
		{"pattern RE2 cannot compile: mainline, the cookie not read", "/bad", http.Header{"X-Canary": {"DoCanary"}, "Cookie": {"Canary=always"}}, main},
		{"pattern RE2 cannot compile, no header: the cookie decides", "/bad", http.Header{"Cookie": {"Canary=always"}}, can},
		{"cookie always", "/cookie", http.Header{"Cookie": {"a=1; Canary=always"}}, can},
		{"cookie never", "/cookie", http.Header{"Cookie": {"Canary=never"}}, main},
		{"cookie other", "/cookie", http.Header{"Cookie": {"Canary=yes"}}, main},
		{"header never stops before the weight", "/never", http.Header{"X-Canary": {"never"}}, main},
		{"cookie never stops before the weight", "/never", http.Header{"Cookie": {"Canary=never"}}, main},
		{"weight 100", "/never", nil, can},
		{"weight 0", "/w0", nil, main},
		{"weight 100 of 100", "/w100", nil, can},
		{"weight 1000 of 1000", "/w1000", nil, can},
	}
	for _, tc := range cases {
		for range 20 { // weights are random: each case must hold every time
			x := decide(l, &testHead{host: "canary.test", path: tc.path, header: tc.header}, nil)
			if x.Endpoint == nil || x.Endpoint.Address != tc.want {
				t.Fatalf("%s: sent to %v (%d %s), want %s", tc.name, x.Endpoint, x.Reply.Status, x.Reply.Reason, tc.want)
			}
		}
	}
}

// TestCanaryWeightShare: canary-weight 50 (and 100 of 200, the total
// honoured above 100) sends about half the requests to each side, as
// ingress-nginx's e2e case checks (each side at least 40% of 200); a
// total below 100 counts as 100.
func TestCanaryWeightShare(t *testing.T) {
	t.Parallel()
	l := canaryListener(t, map[string]*route.Canary{
		"/half":  {Weight: 50, WeightTotal: 100},
		"/of200": {Weight: 100, WeightTotal: 200},
		"/small": {Weight: 10, WeightTotal: 20},
	})
	share := func(path string) float64 {
		n := 0
		const total = 2000
		for range total {
			x := decide(l, &testHead{host: "canary.test", path: path}, nil)
			if x.Endpoint != nil && x.Endpoint.Address == "192.0.2.20:80" {
				n++
			}
		}
		return float64(n) / total
	}
	for path, want := range map[string]float64{"/half": 0.5, "/of200": 0.5, "/small": 0.1} {
		// 2000 draws: 5 standard deviations are under 0.06.
		if got := share(path); got < want-0.06 || got > want+0.06 {
			t.Errorf("%s: canary share %.3f, want about %.2f", path, got, want)
		}
	}
}

// TestCanaryMainlinePolicies: the canary's requests get the mainline's
// route policies (here its body limit: 413 before either backend).
func TestCanaryMainlinePolicies(t *testing.T) {
	t.Parallel()
	l := canaryListener(t, map[string]*route.Canary{"/": {Header: "X-Canary", WeightTotal: 100}})
	x := decide(l, &testHead{method: http.MethodPost, host: "canary.test", path: "/", contentLength: 100, header: http.Header{"X-Canary": {"always"}}}, nil)
	if x.Reply.Status != http.StatusRequestEntityTooLarge || x.Endpoint != nil {
		t.Fatalf("a canary request over the mainline's body limit: %d, endpoint %v; want 413", x.Reply.Status, x.Endpoint)
	}
}

// BenchmarkCanary is the decision of a request of a route with a header,
// cookie and weight canary that ends at the weight.
func BenchmarkCanary(b *testing.B) {
	l := canaryListener(b, map[string]*route.Canary{"/": {Header: "X-Canary", Cookie: "Canary", Weight: 10, WeightTotal: 100}})
	in := &testHead{host: "canary.test", path: "/", header: http.Header{"Cookie": {"session=abc; theme=dark"}}}
	var x Exchange
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In, x.Remote, x.PeerIP, x.Proto, x.ProtoMajor = in, "198.51.100.7:4711", "198.51.100.7", "HTTP/1.1", 1
		l.Decide(&x)
		if x.Endpoint == nil {
			b.Fatal("not forwarded")
		}
	}
}
