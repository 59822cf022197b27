package pipeline

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// affinityPipeline serves sticky.test "/" from a backend of n endpoints
// with affinity a, and a canary backend (weight from canary) when canary
// is not nil.
func affinityPipeline(n int, a *route.Affinity, canary *route.Canary) (*Pipeline, func(n int)) {
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	swap := func(n int) {
		main := &route.Backend{Key: "ns/main:80"}
		for i := range n {
			main.Endpoints = append(main.Endpoints, route.Endpoint{Address: fmt.Sprintf("192.0.2.%d:80", 10+i)})
		}
		rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{Affinity: a}, Backends: route.Single(main)}
		if canary != nil {
			can := &route.Backend{Key: "ns/canary:80", Endpoints: []route.Endpoint{{Address: "198.51.100.1:80"}}}
			rt.Backends = append(rt.Backends, route.WeightedBackend{Backend: can})
			rt.Canary = canary
		}
		p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("sticky.test", []*route.Route{rt})}, nil))
	}
	swap(n)
	return p, swap
}

// stickyGet decides a request with cookie (none when empty) and returns
// where it went and the session cookie it was given ("" for none).
func stickyGet(t *testing.T, l *Listener, cookie string, header http.Header) (endpoint, setCookie string) {
	t.Helper()
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	if cookie != "" {
		h.Set("Cookie", "other=1; "+cookie)
	}
	x := decide(l, &testHead{host: "sticky.test", path: "/a", header: h}, nil)
	if x.Endpoint == nil {
		t.Fatalf("not forwarded: %d %s", x.Reply.Status, x.Reply.Reason)
	}
	for _, e := range x.Resp.All() {
		if e.Name == "Set-Cookie" {
			setCookie = e.Value
		}
	}
	return x.Endpoint.Address, setCookie
}

// cookiePair is the name=value of a Set-Cookie.
func cookiePair(setCookie string) string {
	pair, _, _ := strings.Cut(setCookie, ";")
	return pair
}

// TestAffinity: a request without the cookie gets one (HttpOnly, the
// path, Max-Age, SameSite; Secure over TLS), and with it every later
// request goes to the same endpoint without a new cookie, in both modes;
// a cookie that is not Postern's, or of another backend, is replaced.
func TestAffinity(t *testing.T) {
	t.Parallel()
	for _, mode := range []route.AffinityMode{route.AffinityBalanced, route.AffinityPersistent} {
		a := &route.Affinity{Mode: mode, CookieName: "INGRESSCOOKIE", CookiePath: "/a", MaxAge: 60, SameSite: "Lax"}
		p, _ := affinityPipeline(5, a, nil)
		l := p.Listener(ListenerOptions{})
		for range 20 {
			first, set := stickyGet(t, l, "", nil)
			if !strings.HasPrefix(set, "INGRESSCOOKIE=") || !strings.HasSuffix(set, "; Path=/a; Max-Age=60; HttpOnly; SameSite=Lax") {
				t.Fatalf("%s: Set-Cookie %q", mode, set)
			}
			for range 5 {
				ep, again := stickyGet(t, l, cookiePair(set), nil)
				if ep != first || again != "" {
					t.Fatalf("%s: with the cookie: %s (Set-Cookie %q), want %s and no new cookie", mode, ep, again, first)
				}
			}
		}
		for _, bad := range []string{"INGRESSCOOKIE=x", "INGRESSCOOKIE=0123456789abcdef|1", "INGRESSCOOKIE=zz23456789abcdef|1"} {
			if _, set := stickyGet(t, l, bad, nil); set == "" {
				t.Errorf("%s: cookie %q kept", mode, bad)
			}
		}
		secure := p.Listener(ListenerOptions{Secure: true})
		if _, set := stickyGet(t, secure, "", nil); !strings.Contains(set, "; Secure; HttpOnly") {
			t.Errorf("%s over TLS: %q, want Secure", mode, set)
		}
	}
}

// TestAffinityScaleUp: balanced sessions mostly stay when an endpoint is
// added (rendezvous hashing moves about 1/n of them); persistent ones all
// stay while their endpoint exists, endpoints added one by one up to 11
// (ingress-nginx's affinitymode e2e case), and get a new endpoint and
// cookie once theirs is gone.
func TestAffinityScaleUp(t *testing.T) {
	t.Parallel()
	const sessions = 400
	for _, mode := range []route.AffinityMode{route.AffinityBalanced, route.AffinityPersistent} {
		a := &route.Affinity{Mode: mode, CookieName: "S", CookiePath: "/"}
		p, swap := affinityPipeline(3, a, nil)
		l := p.Listener(ListenerOptions{})
		cookies := make([]string, sessions)
		where := make([]string, sessions)
		for i := range cookies {
			ep, set := stickyGet(t, l, "", nil)
			cookies[i], where[i] = cookiePair(set), ep
		}
		moved := func() int {
			n := 0
			for i, c := range cookies {
				if ep, _ := stickyGet(t, l, c, nil); ep != where[i] {
					n++
				}
			}
			return n
		}
		swap(4)
		n := moved()
		switch mode {
		case route.AffinityBalanced:
			// A quarter should move; well under half must stay put.
			if n < sessions/8 || n > sessions*3/8 {
				t.Errorf("balanced, 3 -> 4 endpoints: %d of %d sessions moved, want about %d", n, sessions, sessions/4)
			}
		case route.AffinityPersistent:
			for e := 5; e <= 11; e++ {
				swap(e)
				n += moved()
			}
			if n != 0 {
				t.Errorf("persistent, 3 -> 11 endpoints: %d sessions moved, want none", n)
			}
			// Down to one endpoint: the others' sessions go there, with a
			// new cookie.
			swap(1)
			for i, c := range cookies {
				ep, set := stickyGet(t, l, c, nil)
				if ep != "192.0.2.10:80" || (set == "") == (where[i] != "192.0.2.10:80") {
					t.Fatalf("session on %s after scale-down: %s, Set-Cookie %q", where[i], ep, set)
				}
			}
		}
	}
}

// TestAffinityCanary: a client the canary's weight sent to the canary
// stays there, and one on the mainline stays on the mainline, whatever
// the weight says next (ingress-nginx's affinity-canary-behavior: sticky);
// with legacy the weight decides every request.
func TestAffinityCanary(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		a := &route.Affinity{Mode: route.AffinityBalanced, CookieName: "S", CookiePath: "/", CanaryLegacy: legacy}
		p, _ := affinityPipeline(2, a, &route.Canary{Weight: 50, WeightTotal: 100})
		l := p.Listener(ListenerOptions{})
		switched := 0
		for range 50 {
			first, set := stickyGet(t, l, "", nil)
			for range 10 {
				ep, _ := stickyGet(t, l, cookiePair(set), nil)
				if (ep == "198.51.100.1:80") != (first == "198.51.100.1:80") {
					switched++
				}
			}
		}
		if !legacy && switched != 0 {
			t.Errorf("sticky: %d requests switched sides", switched)
		}
		if legacy && switched == 0 {
			t.Error("legacy: no request switched sides, want the weight to decide each")
		}
	}
}

// TestAffinityCookieAttributes: Domain, Expires, forced Secure, and
// SameSite=None left out for a browser that rejects it when conditional.
func TestAffinityCookieAttributes(t *testing.T) {
	t.Parallel()
	a := &route.Affinity{Mode: route.AffinityBalanced, CookieName: "S", CookiePath: "/", CookieDomain: "sticky.test",
		Expires: 3600, Secure: true, SameSite: "None", ConditionalSameSiteNone: true}
	p, _ := affinityPipeline(2, a, nil)
	l := p.Listener(ListenerOptions{})
	_, set := stickyGet(t, l, "", http.Header{"User-Agent": {"Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36"}})
	for _, want := range []string{"; Path=/; Domain=sticky.test; Expires=", " GMT; Secure; HttpOnly; SameSite=None"} {
		if !strings.Contains(set, want) {
			t.Errorf("Set-Cookie %q lacks %q", set, want)
		}
	}
	_, set = stickyGet(t, l, "", http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/62.0.3202.94 Safari/537.36"}})
	if strings.Contains(set, "SameSite") {
		t.Errorf("Chrome 62: Set-Cookie %q has SameSite", set)
	}
}

// BenchmarkAffinity is the decision of a request with a valid balanced
// session cookie over 10 endpoints.
func BenchmarkAffinity(b *testing.B) {
	a := &route.Affinity{Mode: route.AffinityBalanced, CookieName: "S", CookiePath: "/"}
	p, _ := affinityPipeline(10, a, nil)
	l := p.Listener(ListenerOptions{})
	first := decide(l, &testHead{host: "sticky.test", path: "/"}, nil)
	var cookie string
	for _, e := range first.Resp.All() {
		if e.Name == "Set-Cookie" {
			cookie = cookiePair(e.Value)
		}
	}
	in := &testHead{host: "sticky.test", path: "/", header: http.Header{"Cookie": {cookie}}}
	var x Exchange
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In, x.Remote, x.PeerIP, x.Proto, x.ProtoMajor = in, "198.51.100.7:4711", "198.51.100.7", "HTTP/1.1", 1
		l.Decide(&x)
		if x.Endpoint == nil || x.Resp.Len() > 1 {
			b.Fatal("not forwarded, or a new cookie")
		}
	}
}
