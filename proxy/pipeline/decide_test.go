package pipeline

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// testTable has app.test (one endpoint, a body limit of 10 bytes on
// /small, a backend without endpoints on /empty, an HTTPS backend on
// /tls), a TLS host with redirect and HSTS, and an ACME host.
func testTable() *route.Table {
	web := &route.Backend{Key: "ns/web:80", Namespace: "ns", Service: "web", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	empty := &route.Backend{Key: "ns/empty:80", Namespace: "ns", Service: "empty"}
	tls := &route.Backend{Key: "ns/tls:443|HTTPS", Namespace: "ns", Service: "tls", Protocol: route.ProtocolHTTPS,
		Endpoints: []route.Endpoint{{Address: "192.0.2.11:443"}}}
	src := route.Source{Namespace: "ns", Name: "ing"}
	return route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("app.test", []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web), Source: src},
			{Match: route.Match{PathType: route.PathPrefix, Path: "/small"}, Policy: &route.Policy{MaxBodySize: 10}, Backends: route.Single(web), Source: src},
			{Match: route.Match{PathType: route.PathPrefix, Path: "/empty"}, Backends: route.Single(empty), Source: src},
			{Match: route.Match{PathType: route.PathPrefix, Path: "/tls"}, Backends: route.Single(tls), Source: src},
		}),
		route.NewVirtualHost("secure.test", []*route.Route{{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web), Source: src}}),
		route.NewVirtualHost("acme.test", []*route.Route{{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web), Source: src}}),
	}, nil).WithTLS([]*route.TLSHost{
		{Host: "secure.test", Redirect: true, HSTS: "max-age=60"},
		{Host: "acme.test", ACME: true},
	})
}

type challenges struct{}

func (challenges) Challenge(host, path string) Reply {
	return Reply{Status: http.StatusOK, Body: "token for " + host + path}
}

func newTestPipeline(opts Options) *Pipeline {
	if opts.Cluster == nil {
		opts.Cluster = upstream.New(upstream.Options{})
	}
	p := New(opts)
	p.Swap(testTable())
	return p
}

func decide(l *Listener, in *testHead, setup func(*Exchange)) *Exchange {
	if in.header == nil {
		in.header = http.Header{}
	}
	x := &Exchange{In: in, Remote: "198.51.100.7:4711", PeerIP: "198.51.100.7", Proto: "HTTP/1.1", ProtoMajor: 1}
	if setup != nil {
		setup(x)
	}
	l.Decide(x)
	return x
}

func TestDecide(t *testing.T) {
	t.Parallel()
	p := newTestPipeline(Options{})
	plain := p.Listener(ListenerOptions{Challenges: challenges{}, HTTPSPort: 8443})
	secure := p.Listener(ListenerOptions{Secure: true, Covers: func(sni, host string) bool { return sni == route.NormalizeHost(host) }})
	tests := []struct {
		name      string
		l         *Listener
		in        testHead
		setup     func(*Exchange)
		status    int    // 0: forwarded
		endpoint  string // of a forward
		location  string
		handoff   string
		respField string // a field the response edits set: name=value
	}{
		{name: "forward", l: plain, in: testHead{host: "app.test", path: "/x"}, endpoint: "192.0.2.10:80"},
		{name: "no route", l: plain, in: testHead{host: "other.test"}, status: 404},
		{name: "no endpoint", l: plain, in: testHead{host: "app.test", path: "/empty"}, status: 503},
		{name: "body over the limit", l: plain, in: testHead{method: "POST", host: "app.test", path: "/small", contentLength: 11}, status: 413},
		{name: "body within the limit", l: plain, in: testHead{method: "POST", host: "app.test", path: "/small", contentLength: 10}, endpoint: "192.0.2.10:80"},
		{name: "chunked body, limit checked as sent", l: plain, in: testHead{method: "POST", host: "app.test", path: "/small", contentLength: -1}, endpoint: "192.0.2.10:80"},
		{name: "OPTIONS *", l: plain, in: testHead{method: "OPTIONS", host: "app.test", uri: "*"}, status: 200},
		{name: "GET *", l: plain, in: testHead{host: "app.test", uri: "*"}, status: 400},
		{name: "CONNECT", l: plain, in: testHead{method: "CONNECT", host: "app.test:22", path: ""}, status: 405},
		{name: "HTTP/2 Host differs from :authority", l: secure, in: testHead{host: "secure.test", header: http.Header{"Host": {"app.test"}}},
			setup: func(x *Exchange) { x.ProtoMajor, x.ServerName = 2, "secure.test" }, status: 400},
		{name: "redirect to HTTPS", l: plain, in: testHead{host: "Secure.Test:80", path: "/a", query: "b=1"}, status: 308, location: "https://secure.test:8443/a?b=1"},
		{name: "ACME challenge", l: plain, in: testHead{host: "acme.test", path: "/.well-known/acme-challenge/tok"}, status: 200},
		{name: "ACME host, other path", l: plain, in: testHead{host: "acme.test", path: "/x"}, endpoint: "192.0.2.10:80"},
		{name: "misdirected", l: secure, in: testHead{host: "app.test"}, setup: func(x *Exchange) { x.ServerName = "secure.test" }, status: 421},
		{name: "HSTS", l: secure, in: testHead{host: "secure.test"}, setup: func(x *Exchange) { x.ServerName = "secure.test" },
			endpoint: "192.0.2.10:80", respField: "Strict-Transport-Security=max-age=60"},
		{name: "HSTS on a local answer", l: secure, in: testHead{host: "secure.test", uri: "*"}, setup: func(x *Exchange) { x.ServerName = "secure.test" },
			status: 400, respField: "Strict-Transport-Security=max-age=60"},
		{name: "no HSTS on plain HTTP", l: plain, in: testHead{host: "app.test"}, endpoint: "192.0.2.10:80", respField: "Strict-Transport-Security="},
		{name: "an HTTPS backend the engine cannot carry", l: plain, in: testHead{host: "app.test", path: "/tls"},
			setup: func(x *Exchange) { x.Caps = CapH1 }, handoff: observe.HandoffBackendProtocol},
		{name: "an HTTPS backend the engine can carry", l: plain, in: testHead{host: "app.test", path: "/tls"},
			setup: func(x *Exchange) { x.Caps = CapH1 | CapH1TLS }, endpoint: "192.0.2.11:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x := decide(tt.l, &tt.in, tt.setup)
			if x.Handoff != tt.handoff {
				t.Fatalf("hand-off %q, want %q", x.Handoff, tt.handoff)
			}
			if tt.handoff != "" {
				return
			}
			if x.Reply.Status != tt.status {
				t.Fatalf("status %d (%s), want %d", x.Reply.Status, x.Reply.Reason, tt.status)
			}
			if tt.status == 0 && (x.Endpoint == nil || x.Endpoint.Address != tt.endpoint) {
				t.Errorf("endpoint %v, want %s", x.Endpoint, tt.endpoint)
			}
			var loc string
			for _, f := range x.Reply.Fields {
				if f.Name == "Location" {
					loc = f.Value
				}
			}
			if loc != tt.location {
				t.Errorf("Location %q, want %q", loc, tt.location)
			}
			if x.ID == "" || editedValues(&x.Resp, HeaderRequestID) != x.ID || editedValues(&x.Req, HeaderRequestID) != x.ID {
				t.Errorf("request ID %q not on both heads: req %v resp %v", x.ID, x.Req.All(), x.Resp.All())
			}
			if tt.respField != "" {
				name, want, _ := cut(tt.respField, '=')
				if got := editedValues(&x.Resp, name); got != want {
					t.Errorf("response %s %q, want %q", name, got, want)
				}
			}
		})
	}
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestDecideForwarding checks the forwarding fields sent to the endpoint
// and the client the access log names, from untrusted and trusted peers.
func TestDecideForwarding(t *testing.T) {
	t.Parallel()
	p := newTestPipeline(Options{})
	trusted, err := ParseTrustedProxies([]string{"198.51.100.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	claims := http.Header{
		"X-Forwarded-For":   {"203.0.113.7", "10.0.0.1"},
		"X-Forwarded-Host":  {"public.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=203.0.113.7"},
		"X-Real-Ip":         {"192.0.2.66"},
	}
	tests := []struct {
		name     string
		opts     ListenerOptions
		peerIP   string
		want     map[string]string // Set values; "-" means deleted
		keep     []string          // names left as the client sent them
		client   string            // the real client: for a trusted peer, the rightmost untrusted address
		parseIt  bool              // the engine leaves Peer for the pipeline to parse
		secureTo bool              // the request came over TLS
	}{
		{name: "untrusted", peerIP: "198.51.100.7", client: "198.51.100.7:4711", want: map[string]string{
			"X-Forwarded-For": "198.51.100.7", "X-Real-Ip": "198.51.100.7", "X-Forwarded-Host": "app.test",
			"X-Forwarded-Proto": "http", "Forwarded": "-"}},
		{name: "untrusted on TLS", peerIP: "198.51.100.7", secureTo: true, client: "198.51.100.7:4711", want: map[string]string{
			"X-Forwarded-Proto": "https"}},
		{name: "trusted", opts: ListenerOptions{Trusted: trusted}, peerIP: "198.51.100.7", client: "10.0.0.1", want: map[string]string{
			"X-Forwarded-For": "203.0.113.7, 10.0.0.1, 198.51.100.7", "X-Real-Ip": "10.0.0.1"},
			keep: []string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}},
		{name: "trusted, address parsed by the pipeline", opts: ListenerOptions{Trusted: trusted}, peerIP: "198.51.100.7", parseIt: true,
			client: "10.0.0.1", want: map[string]string{"X-Real-Ip": "10.0.0.1"}},
		{name: "not over IP", peerIP: "", client: "198.51.100.7:4711", want: map[string]string{
			"X-Forwarded-For": "-", "X-Real-Ip": "-", "X-Forwarded-Host": "app.test", "Forwarded": "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := p.Listener(tt.opts)
			x := decide(l, &testHead{host: "app.test", header: claims}, func(x *Exchange) {
				x.PeerIP, x.Secure = tt.peerIP, tt.secureTo
				if !tt.parseIt && tt.peerIP != "" {
					x.Peer = netip.MustParseAddr(tt.peerIP)
				}
			})
			if x.Endpoint == nil {
				t.Fatalf("not forwarded: %+v", x.Reply)
			}
			if x.Client != tt.client {
				t.Errorf("client %q, want %q", x.Client, tt.client)
			}
			for name, want := range tt.want {
				if want == "-" {
					if !x.Req.Drops(name) || editedValues(&x.Req, name) != "" {
						t.Errorf("%s not deleted: %v", name, x.Req.All())
					}
					continue
				}
				if got := editedValues(&x.Req, name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			for _, name := range tt.keep {
				if x.Req.Drops(name) {
					t.Errorf("%s, sent by a trusted proxy, is not passed on", name)
				}
			}
		})
	}
}

// A policy given in Options runs for every routed request, after the
// route's own, and may answer it: nothing is forwarded then.
func TestDecideExtraPolicies(t *testing.T) {
	t.Parallel()
	deny := PolicyFunc(func(x *Exchange) {
		if _, n := x.In.Header("Authorization"); n == 0 {
			x.Reply = Reply{Status: http.StatusUnauthorized, Reason: "no credentials"}
		}
	})
	p := newTestPipeline(Options{Policies: []Policy{deny}})
	l := p.Listener(ListenerOptions{})
	if x := decide(l, &testHead{host: "app.test"}, nil); x.Reply.Status != http.StatusUnauthorized || x.Endpoint != nil {
		t.Errorf("without credentials: status %d endpoint %v, want 401 and no forward", x.Reply.Status, x.Endpoint)
	}
	if x := decide(l, &testHead{host: "app.test", header: http.Header{"Authorization": {"Basic eDp5"}}}, nil); x.Reply.Status != 0 || x.Endpoint == nil {
		t.Errorf("with credentials: status %d endpoint %v, want a forward", x.Reply.Status, x.Endpoint)
	}
	// The body limit of the route runs first: 413, not 401.
	if x := decide(l, &testHead{method: "POST", host: "app.test", path: "/small", contentLength: 99}, nil); x.Reply.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("over the limit without credentials: %d, want the route's 413 first", x.Reply.Status)
	}
}

// The settings of a route whose policy sets timeouts and retries, and of
// one without a policy: two routes of one backend, which keeps its own
// connect timeout on both.
func TestDecideSettings(t *testing.T) {
	t.Parallel()
	c := upstream.New(upstream.Options{DialTimeout: 3e9, ResponseHeaderTimeout: 7e9})
	p := New(Options{Cluster: c})
	be := &route.Backend{Key: "ns/a:80", Endpoints: []route.Endpoint{{Address: "192.0.2.1:80"}}, ConnectTimeout: route.Duration(1e9)}
	plain := &route.Backend{Key: "ns/b:80", Endpoints: []route.Endpoint{{Address: "192.0.2.2:80"}}}
	pol := &route.Policy{Retries: 3, ReadTimeout: route.Duration(2e9), IdleTimeout: route.Duration(5e9)}
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("a.test", []*route.Route{
		{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(be)},
		{Match: route.Match{PathType: route.PathPrefix, Path: "/same"}, Backends: route.Single(be)},
		{Match: route.Match{PathType: route.PathPrefix, Path: "/plain"}, Backends: route.Single(plain)},
	})}, nil))
	l := p.Listener(ListenerOptions{})
	x := decide(l, &testHead{host: "a.test"}, nil)
	if want := (upstream.Settings{ConnectTimeout: 1e9, ReadTimeout: 2e9, IdleTimeout: 5e9, Retries: 3}); x.Settings != want {
		t.Errorf("settings %+v, want %+v", x.Settings, want)
	}
	x = decide(l, &testHead{host: "a.test", path: "/same"}, nil)
	if want := (upstream.Settings{ConnectTimeout: 1e9, ReadTimeout: 7e9, Retries: route.DefaultRetries}); x.Settings != want || x.Backend != be {
		t.Errorf("settings of the backend's other route %+v (backend %v), want %+v", x.Settings, x.Backend, want)
	}
	x = decide(l, &testHead{host: "a.test", path: "/plain"}, nil)
	if want := (upstream.Settings{ConnectTimeout: 3e9, ReadTimeout: 7e9, Retries: route.DefaultRetries}); x.Settings != want {
		t.Errorf("default settings %+v, want %+v", x.Settings, want)
	}
}

// Weighted backends: each gets its share, one of weight 0 nothing, and a
// route whose weights are all 0 answers 503.
func TestDecideWeightedBackends(t *testing.T) {
	t.Parallel()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	mk := func(name string) *route.Backend {
		return &route.Backend{Key: "ns/" + name + ":80", Service: name, Endpoints: []route.Endpoint{{Address: "192.0.2.1:80"}}}
	}
	a, b, off := mk("a"), mk("b"), mk("off")
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("w.test", []*route.Route{
		{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: []route.WeightedBackend{{Backend: a, Weight: 3}, {Backend: b, Weight: 1}, {Backend: off, Weight: 0}}},
		{Match: route.Match{PathType: route.PathPrefix, Path: "/none"}, Backends: []route.WeightedBackend{{Backend: a, Weight: 0}}},
		{Match: route.Match{PathType: route.PathPrefix, Path: "/none2"}, Backends: []route.WeightedBackend{{Backend: a, Weight: 0}, {Backend: b, Weight: 0}}},
	})}, nil))
	l := p.Listener(ListenerOptions{})
	count := map[*route.Backend]int{}
	const n = 4000
	for range n {
		x := decide(l, &testHead{host: "w.test"}, nil)
		count[x.Backend]++
	}
	if count[off] != 0 || count[a]+count[b] != n {
		t.Fatalf("choices %v", count)
	}
	// 3:1, within a margin that a fair choice misses far less than once
	// in a million runs (binomial, sd ~27).
	if got := count[a]; got < 2800 || got > 3200 {
		t.Errorf("backend of weight 3 of 4 chosen %d times of %d", got, n)
	}
	for _, path := range []string{"/none", "/none2"} {
		x := decide(l, &testHead{host: "w.test", path: path}, nil)
		if x.Reply.Status != http.StatusServiceUnavailable || x.Backend != nil {
			t.Errorf("%s: all weights 0: status %d, backend %v; want 503", path, x.Reply.Status, x.Backend)
		}
	}
}

// A weighted backend's own header edits (a Gateway API backendRef's
// filters) are made only for the requests that go to it, after the
// route's.
func TestDecideBackendHeaderEdits(t *testing.T) {
	t.Parallel()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	mk := func(name string) route.WeightedBackend {
		return route.WeightedBackend{
			Backend:         &route.Backend{Key: "ns/" + name + ":80", Service: name, Endpoints: []route.Endpoint{{Address: "192.0.2.1:80"}}},
			Weight:          1,
			RequestHeaders:  &route.HeaderEdits{{Op: route.HeaderSet, Name: "Backend", Value: route.LiteralTemplate(name)}},
			ResponseHeaders: &route.HeaderEdits{{Op: route.HeaderAdd, Name: "X-Served-By", Value: route.LiteralTemplate(name)}},
		}
	}
	a, b := mk("a"), mk("b")
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("w.test", []*route.Route{
		{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: []route.WeightedBackend{a, b},
			Policy: &route.Policy{RequestHeaders: &route.HeaderEdits{{Op: route.HeaderSet, Name: "Backend", Value: route.LiteralTemplate("route")}}}},
	})}, nil))
	l := p.Listener(ListenerOptions{})
	seen := map[string]int{}
	for range 200 {
		x := decide(l, &testHead{host: "w.test"}, nil)
		var req, resp []string
		for _, e := range x.Req.All() {
			if e.Name == "Backend" {
				req = append(req, e.Value)
			}
		}
		for _, e := range x.Resp.All() {
			if e.Name == "X-Served-By" {
				resp = append(resp, e.Value)
			}
		}
		name := x.Backend.Service
		seen[name]++
		if len(req) == 0 || req[len(req)-1] != name || len(resp) != 1 || resp[0] != name {
			t.Fatalf("to backend %s: request edits of Backend %v, response edits of X-Served-By %v; want %s last and only %s", name, req, resp, name, name)
		}
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("choices %v, want both backends", seen)
	}
}

// A patch of a table that is not the one served is swapped in the full
// way; a patch of the one served keeps the policies of the routes it did
// not touch.
func TestSwapPatch(t *testing.T) {
	t.Parallel()
	p := newTestPipeline(Options{})
	cur := p.Table()
	var small *route.Backend
	for rt := range cur.Routes() {
		if rt.Path == "/small" {
			small = rt.First()
		}
	}
	nb := *small
	nb.Endpoints = []route.Endpoint{{Address: "192.0.2.99:80"}}
	p.Swap(cur.WithBackends(map[*route.Backend]*route.Backend{small: &nb}))
	l := p.Listener(ListenerOptions{})
	x := decide(l, &testHead{method: "POST", host: "app.test", path: "/small", contentLength: 11}, nil)
	if x.Reply.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("after the patch, over the limit: %d, want 413 (the patched route's policy)", x.Reply.Status)
	}
	x = decide(l, &testHead{method: "POST", host: "app.test", path: "/small", contentLength: 5}, nil)
	if x.Endpoint == nil || x.Endpoint.Address != "192.0.2.99:80" {
		t.Errorf("after the patch: endpoint %v, want the patched one", x.Endpoint)
	}
	// Patching a table that is not the one served: the full path.
	other := testTable()
	p.Swap(other.WithBackends(map[*route.Backend]*route.Backend{other.Backends()[0]: &nb}))
	if p.Table().Patch() == nil {
		t.Fatal("the table served is not the patched one")
	}
	if x := decide(l, &testHead{host: "app.test", path: "/x"}, nil); x.Endpoint == nil {
		t.Errorf("after a full swap: %+v", x.Reply)
	}
}

// BenchmarkDecide is the pipeline's cost for a plain request on a plain
// listener: the listener policies, the lookup, the backend and endpoint
// pick. It must not allocate.
func BenchmarkDecide(b *testing.B) {
	p := newTestPipeline(Options{})
	l := p.Listener(ListenerOptions{})
	in := &testHead{host: "app.test", path: "/items/42", header: http.Header{"User-Agent": {"bench"}}}
	x := &Exchange{}
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In, x.Remote, x.PeerIP, x.Proto, x.ProtoMajor = in, "198.51.100.7:4711", "198.51.100.7", "HTTP/1.1", 1
		l.Decide(x)
		if x.Endpoint == nil {
			b.Fatal("no endpoint")
		}
	}
}
