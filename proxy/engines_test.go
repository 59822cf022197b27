package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// TestPolicyHoldsOnEveryEngine adds a policy that denies requests without
// credentials, the way a newcomer adds basic auth: on every engine the
// request is answered 401 and the backend is never reached; before the
// pipeline, the fast path (the default) let it through. A request with
// credentials goes through on the fast path, not handed off.
func TestPolicyHoldsOnEveryEngine(t *testing.T) {
	t.Parallel()
	deny := pipeline.PolicyFunc(func(x *pipeline.Exchange) {
		if _, n := x.In.Header("Authorization"); n == 0 {
			x.Reply = pipeline.Reply{
				Status: http.StatusUnauthorized,
				Fields: []pipeline.Edit{{Op: pipeline.Set, Name: "Www-Authenticate", Value: `Basic realm="test"`}},
				Reason: "no credentials",
			}
		}
	})
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		h := New(Options{Policies: []pipeline.Policy{deny}})
		h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		resp, _ := get(t, c, addr, "app.test", "/secret")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Www-Authenticate") != `Basic realm="test"` {
			t.Errorf("without credentials: %d %v, want 401 with the challenge", resp.StatusCode, resp.Header)
		}
		if n := b.hits.Load(); n != 0 {
			t.Fatalf("the backend got %d requests without credentials, want 0", n)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/secret", nil)
		req.Host = "app.test"
		req.Header.Set("Authorization", "Basic eDp5")
		if resp, body := do(t, c, req); resp.StatusCode != http.StatusOK || b.hits.Load() != 1 {
			t.Errorf("with credentials: %d %q, backend hits %d; want 200 and 1", resp.StatusCode, body, b.hits.Load())
		}
		if e.fast() && served(s) != 2 {
			t.Errorf("the fast path decided %d requests, want both", served(s))
		}
	})
}

// TestFastPathServesBodyLimit checks that a route with a body limit
// (postern.dev/max-body-size) is served by the fast path, 413s included:
// it used to be handed to net/http.
func TestFastPathServesBodyLimit(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	be := backendOf("b", "", b)
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)
	h := New(Options{Metrics: m})
	h.Swap(route.NewTable(nil, &route.Route{Policy: &route.Policy{MaxBodySize: 10}, Backends: route.Single(be)}))
	t.Cleanup(h.CloseIdleConnections)
	addr, s := startServer(t, fastPath, h, ServerOptions{Metrics: m})
	resps, c, _ := exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"+
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 2)
	if len(resps) != 2 || resps[0].StatusCode != http.StatusOK || resps[1].StatusCode != http.StatusOK {
		t.Fatalf("responses %v, want two 200s", resps)
	}
	c.Close()
	resps, _, _ = exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the limit: %v, want 413", resps)
	}
	resps, _, _ = exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the limit: %v, want 413", resps)
	}
	if n := served(s); n != 4 {
		t.Errorf("the fast path decided %d requests, want 4", n)
	}
	if n := scalar(t, reg, "postern_proxy_fastpath_handoffs_total"); n != 0 {
		t.Errorf("%g hand-offs, want none", n)
	}
}

// TestHandoffsCounted checks that what the fast path cannot carry goes to
// net/http, which serves it, and is counted by reason.
func TestHandoffsCounted(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	tlsBackend := backendOf("tls", "", b)
	tlsBackend.Protocol = route.ProtocolHTTPS
	tbl := route.NewTable([]*route.VirtualHost{vhost("app.test",
		prefix("/", backendOf("b", "", b)),
		prefix("/tls", tlsBackend),
	)}, nil)
	tests := []struct {
		name, req, reason string
		want              int
	}{
		{"upgrade", "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", observe.HandoffUpgrade, http.StatusOK},
		{"expect", "POST / HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", observe.HandoffExpect, http.StatusContinue},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n", observe.HandoffTarget, http.StatusOK},
		{"absolute-form", "GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", observe.HandoffTarget, http.StatusOK},
		{"connection option", "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n", observe.HandoffFraming, http.StatusOK},
		{"head too large", "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n", observe.HandoffHeadSize, http.StatusOK},
		{"backend protocol", "GET /tls HTTP/1.1\r\nHost: app.test\r\n\r\n", observe.HandoffBackendProtocol, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			m := observe.NewMetrics(reg)
			h := New(Options{Metrics: m})
			h.Swap(tbl)
			t.Cleanup(h.CloseIdleConnections)
			addr, s := startServer(t, fastPath, h, ServerOptions{Metrics: m})
			resps, _, _ := exchange(t, addr, tt.req, 1)
			if len(resps) != 1 || resps[0].StatusCode != tt.want {
				t.Fatalf("responses %v, want one %d", resps, tt.want)
			}
			got := gather(t, reg, "postern_proxy_fastpath_handoffs_total")
			for _, r := range observe.HandoffReasons {
				want := 0.0
				if r == tt.reason {
					want = 1
				}
				if n := got[`reason="`+r+`"`].value; n != want {
					t.Errorf("handoffs{reason=%q} = %g, want %g", r, n, want)
				}
			}
			if n := served(s); n != 0 {
				t.Errorf("the fast path decided %d requests, want 0", n)
			}
		})
	}
}

// TestRouteConditionsOnEveryEngine serves routes told apart by method,
// header and query, and a route split between two backends by weight, on
// every engine, the fast path deciding them all itself.
func TestRouteConditionsOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		stable, canary, post, query := newBackend(t, "stable", nil), newBackend(t, "canary", nil), newBackend(t, "post", nil), newBackend(t, "query", nil)
		one, other := newBackend(t, "one", nil), newBackend(t, "other", nil)
		at := func(m route.Match, b *testBackend) *route.Route {
			m.PathType = route.PathPrefix
			if m.Path == "" {
				m.Path = "/"
			}
			return &route.Route{Match: m, Backends: route.Single(backendOf(b.name, "", b))}
		}
		split := at(route.Match{Path: "/split"}, one)
		split.Backends = []route.WeightedBackend{{Backend: backendOf("one", "", one), Weight: 1}, {Backend: backendOf("other", "", other), Weight: 1}}
		tbl := route.NewTable([]*route.VirtualHost{vhost("app.test",
			at(route.Match{}, stable),
			at(route.Match{Headers: []route.FieldMatch{route.ExactField("x-env", "canary")}}, canary),
			at(route.Match{Method: http.MethodPost}, post),
			at(route.Match{Query: []route.FieldMatch{route.ExactField("v", "2")}}, query),
			split,
		)}, nil)
		h := New(Options{})
		h.Swap(tbl)
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		send := func(method, target string, header http.Header) string {
			req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addr+target, nil)
			req.Host = "app.test"
			for k, vs := range header {
				req.Header[k] = vs
			}
			resp, body := do(t, c, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %d %q", method, target, resp.StatusCode, body)
			}
			return strings.Fields(body)[0]
		}
		for _, tt := range []struct {
			method, target string
			header         http.Header
			want           string
		}{
			{http.MethodGet, "/a", nil, "stable"},
			{http.MethodGet, "/a", http.Header{"X-Env": {"canary"}}, "canary"},
			{http.MethodPost, "/a", http.Header{"X-Env": {"canary"}}, "post"},
			{http.MethodGet, "/a?x=1&v=2", nil, "query"},
			{http.MethodGet, "/a?v=3", nil, "stable"},
		} {
			if got := send(tt.method, tt.target, tt.header); got != tt.want {
				t.Errorf("%s %s %v: served by %s, want %s", tt.method, tt.target, tt.header, got, tt.want)
			}
		}
		for range 40 {
			send(http.MethodGet, "/split", nil)
		}
		if a, b := one.hits.Load(), other.hits.Load(); a+b != 40 || a == 0 || b == 0 {
			t.Errorf("weights 1:1 over 40 requests: %d and %d", a, b)
		}
		if e.fast() && served(s) != 45 {
			t.Errorf("the fast path decided %d requests, want all 45", served(s))
		}
	})
}
