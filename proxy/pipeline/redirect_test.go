package pipeline

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// redirectCase is a request and the answer it must get: status and
// Location, or a forward (status 0).
type redirectCase struct {
	name     string
	l        *Listener
	in       testHead
	status   int
	location string
}

// runRedirectCases decides each case and checks its answer.
func runRedirectCases(t *testing.T, cases []redirectCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x := decide(tt.l, &tt.in, nil)
			if x.Reply.Status != tt.status {
				t.Fatalf("status %d (%s), want %d", x.Reply.Status, x.Reply.Reason, tt.status)
			}
			if tt.status == 0 {
				if x.Endpoint == nil {
					t.Errorf("not forwarded")
				}
				return
			}
			if x.Endpoint != nil {
				t.Errorf("answered %d and forwarded to %s", x.Reply.Status, x.Endpoint.Address)
			}
			if got := editedValuesOf(x.Reply.Fields, "Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
}

// sslRedirectListeners return a plain listener (HTTPS on 8443, ACME
// challenges answered), one whose HTTPS port is 443, a TLS listener, and
// a plain listener behind a TLS proxy (198.51.100.0/24, the peer of every
// request decide makes, trusted; HTTPS on 443),
// over a table of ssl-redirect and force-ssl-redirect routes:
//   - tls.test (spec.tls, redirect on): "/" as the host says, "/off"
//     ssl-redirect "false", "/small" a body limit;
//   - notls.test (no spec.tls): "/" force-ssl-redirect, "/plain" as the
//     host says;
//   - noredirect.test (spec.tls, redirect off): "/" as the host says,
//     "/force" force-ssl-redirect;
//   - acme.test (ACME certificate, redirect on) with force-ssl-redirect;
//   - onlytls.test: in spec.tls, no route.
func sslRedirectListeners(t *testing.T) (plain, plain443, secure, behind *Listener) {
	t.Helper()
	web := &route.Backend{Key: "ns/web:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	at := func(path string, pol *route.Policy) *route.Route {
		return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Policy: pol, Backends: route.Single(web)}
	}
	off := &route.Policy{SSLRedirect: route.SSLRedirectOff}
	force := &route.Policy{SSLRedirect: route.SSLRedirectForce}
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("tls.test", []*route.Route{at("/", nil), at("/off", off), at("/small", &route.Policy{MaxBodySize: 10})}),
		route.NewVirtualHost("notls.test", []*route.Route{at("/", force), at("/plain", nil)}),
		route.NewVirtualHost("noredirect.test", []*route.Route{at("/", nil), at("/force", force)}),
		route.NewVirtualHost("acme.test", []*route.Route{at("/", force)}),
	}, nil).WithTLS([]*route.TLSHost{
		{Host: "tls.test", Redirect: true},
		{Host: "noredirect.test"},
		{Host: "acme.test", ACME: true, Redirect: true},
		{Host: "onlytls.test", Redirect: true},
	}))
	return p.Listener(ListenerOptions{HTTPSPort: 8443, Challenges: challenges{}}),
		p.Listener(ListenerOptions{HTTPSPort: 443}),
		p.Listener(ListenerOptions{Secure: true}),
		p.Listener(ListenerOptions{HTTPSPort: 443, Trusted: mustTrusted(t, "198.51.100.0/24")})
}

// mustTrusted parses the trusted proxies cidrs.
func mustTrusted(t *testing.T, cidrs ...string) *TrustedProxies {
	t.Helper()
	tp, err := ParseTrustedProxies(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestSSLRedirect: the redirect to HTTPS per route. A route may turn its
// host's redirect off, or force one on a host without TLS; only plain
// HTTP is redirected, before the route's body limit; a host of spec.tls
// without a route for the request is still redirected rather than 404;
// an ACME host's challenges are answered, never redirected.
func TestSSLRedirect(t *testing.T) {
	t.Parallel()
	plain, plain443, secure, _ := sslRedirectListeners(t)
	runRedirectCases(t, []redirectCase{
		{name: "the host's redirect", l: plain, in: testHead{host: "TLS.test:80", path: "/a/", query: "b=1"}, status: 308, location: "https://tls.test:8443/a/?b=1"},
		{name: "port 443 left out", l: plain443, in: testHead{host: "tls.test", path: "/a"}, status: 308, location: "https://tls.test/a"},
		{name: "ssl-redirect off on one route", l: plain, in: testHead{host: "tls.test", path: "/off/x"}},
		{name: "before the body limit", l: plain, in: testHead{method: "POST", host: "tls.test", path: "/small", contentLength: 99}, status: 308, location: "https://tls.test:8443/small"},
		{name: "body limit over TLS", l: secure, in: testHead{method: "POST", host: "tls.test", path: "/small", contentLength: 99}, status: 413},
		{name: "force without TLS", l: plain, in: testHead{host: "notls.test"}, status: 308, location: "https://notls.test:8443/"},
		{name: "force, port 443", l: plain443, in: testHead{host: "notls.test", path: "/x"}, status: 308, location: "https://notls.test/x"},
		{name: "no TLS, not forced", l: plain, in: testHead{host: "notls.test", path: "/plain"}},
		{name: "force over TLS", l: secure, in: testHead{host: "notls.test"}},
		{name: "redirect off for the host", l: plain, in: testHead{host: "noredirect.test"}},
		{name: "force where the host's is off", l: plain, in: testHead{host: "noredirect.test", path: "/force"}, status: 308, location: "https://noredirect.test:8443/force"},
		{name: "no route: redirected, not 404", l: plain, in: testHead{host: "onlytls.test", path: "/x"}, status: 308, location: "https://onlytls.test:8443/x"},
		{name: "no route over TLS", l: secure, in: testHead{host: "onlytls.test", path: "/x"}, status: 404},
		{name: "ACME challenge with force", l: plain, in: testHead{host: "acme.test", path: "/.well-known/acme-challenge/tok"}, status: 200},
		{name: "ACME host, other path, force", l: plain, in: testHead{host: "acme.test", path: "/x"}, status: 308, location: "https://acme.test:8443/x"},
	})
}

// TestSSLRedirectBehindTLSProxy: a request a trusted proxy says came
// over HTTPS (X-Forwarded-Proto, its first value) is not redirected to
// HTTPS, forced or not, which would loop; one it says came over HTTP is,
// and so is one from a peer not trusted, whatever it claims.
func TestSSLRedirectBehindTLSProxy(t *testing.T) {
	t.Parallel()
	plain, _, _, behind := sslRedirectListeners(t)
	https := http.Header{"X-Forwarded-Proto": {"HTTPS"}}
	runRedirectCases(t, []redirectCase{
		{name: "the host's redirect, came over HTTPS", l: behind, in: testHead{host: "tls.test", header: https}},
		{name: "force, came over HTTPS", l: behind, in: testHead{host: "notls.test", header: https}},
		{name: "no route, came over HTTPS", l: behind, in: testHead{host: "onlytls.test", header: https}, status: 404},
		{name: "chained proxies, the first came over HTTPS", l: behind, in: testHead{host: "notls.test", header: http.Header{"X-Forwarded-Proto": {"https, http"}}}},
		{name: "came over HTTP", l: behind, in: testHead{host: "notls.test", header: http.Header{"X-Forwarded-Proto": {"http"}}}, status: 308, location: "https://notls.test/"},
		{name: "no X-Forwarded-Proto", l: behind, in: testHead{host: "tls.test"}, status: 308, location: "https://tls.test/"},
		{name: "an untrusted peer's claim", l: plain, in: testHead{host: "notls.test", header: https}, status: 308, location: "https://notls.test:8443/"},
	})
}

// BenchmarkSSLRedirect is the decision of a plain request of a TLS host:
// the lookup, then the route's redirect to HTTPS.
func BenchmarkSSLRedirect(b *testing.B) {
	plain, _, _, _ := sslRedirectListeners(&testing.T{})
	in := &testHead{host: "tls.test", path: "/items/42", header: map[string][]string{}}
	var x Exchange
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In, x.PeerIP = in, "198.51.100.7"
		plain.Decide(&x)
	}
	if got := editedValuesOf(x.Reply.Fields, "Location"); got != "https://tls.test:8443/items/42" {
		b.Fatalf("Location %q", got)
	}
}
