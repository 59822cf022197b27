package pipeline

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// rewriteListener is a plain listener over a table whose host rw.test
// has the regex routes of ingress-nginx's rewrite-target cases (reference
// §5 items 4-10), each with its target.
func rewriteListener(t *testing.T) *Listener {
	t.Helper()
	web := &route.Backend{Key: "ns/web:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	rx := func(path, target, prefix string) *route.Route {
		r := &route.Route{Match: route.Match{PathType: route.PathRegex, Path: "(?i)^" + path}, Backends: route.Single(web)}
		if target != "" {
			r.Policy = &route.Policy{Rewrite: &route.Rewrite{Target: route.MustTemplate(target, true), ForwardedPrefix: prefix}}
		}
		return r
	}
	vhost := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(web),
		Policy: &route.Policy{UpstreamHost: route.MustTemplate("$http_x_tenant.internal", false)}}
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("rw.test", []*route.Route{
			rx("/something", "/", ""),
			rx("/app(/|$)(.*)", "/$2", "/app"),
			rx("/foo/bar/(.+)", "/new/backend/$1", ""),
			rx("/q", "/search?from=q", ""),
			rx("/drop", "/dropped?", ""),
			rx("/away", "https://elsewhere.test/landing", ""),
			rx("/echo/(.*)", "/e/$1", ""),
			rx("/.well-known/acme/challenge", "", ""),
		}),
		route.NewVirtualHost("vhost.test", []*route.Route{vhost}),
	}, nil))
	return p.Listener(ListenerOptions{})
}

func TestRewrite(t *testing.T) {
	t.Parallel()
	l := rewriteListener(t)
	for _, tt := range []struct {
		path, query, uri string
		wantTarget       string
		wantPrefix       string
	}{
		{path: "/something", wantTarget: "/"},
		{path: "/something/new", wantTarget: "/"},               // the whole URI is replaced
		{path: "/SOMETHING", wantTarget: "/"},                   // case-insensitive
		{path: "/something", query: "x=1", wantTarget: "/?x=1"}, // the query is kept
		{path: "/app", wantTarget: "/", wantPrefix: "/app"},
		{path: "/app/", wantTarget: "/", wantPrefix: "/app"},
		{path: "/app/a/b", query: "k=v", wantTarget: "/a/b?k=v", wantPrefix: "/app"},
		{path: "/foo/bar/bar", wantTarget: "/new/backend/bar"},
		{path: "/q", query: "a=1", wantTarget: "/search?from=q&a=1"},
		{path: "/drop", query: "a=1", wantTarget: "/dropped"},
		// A decoded path is escaped again; CR LF never reaches the head.
		{path: "/echo/a b%\r\n", wantTarget: "/e/a%20b%25%0D"}, // "." stops at the LF, as in PCRE
		{path: "/.well-known/acme/challenge", wantTarget: ""},
	} {
		x := decide(l, &testHead{host: "rw.test", path: tt.path, query: tt.query}, nil)
		if x.Reply.Status != 0 {
			t.Errorf("%s?%s: answered %d, want a forward", tt.path, tt.query, x.Reply.Status)
			continue
		}
		if x.Target != tt.wantTarget {
			t.Errorf("%s?%s: target %q, want %q", tt.path, tt.query, x.Target, tt.wantTarget)
		}
		if got := editedValues(&x.Req, "X-Forwarded-Prefix"); got != tt.wantPrefix {
			t.Errorf("%s: X-Forwarded-Prefix %q, want %q", tt.path, got, tt.wantPrefix)
		}
	}
	x := decide(l, &testHead{host: "rw.test", path: "/away", query: "a=1"}, nil)
	if x.Reply.Status != http.StatusFound || editedValuesOf(x.Reply.Fields, "Location") != "https://elsewhere.test/landing?a=1" {
		t.Errorf("an absolute target: %d %v, want 302 to it with the query", x.Reply.Status, x.Reply.Fields)
	}
}

func TestUpstreamHost(t *testing.T) {
	t.Parallel()
	l := rewriteListener(t)
	x := decide(l, &testHead{host: "vhost.test", header: http.Header{"X-Tenant": {"acme"}}}, nil)
	if x.Reply.Status != 0 || x.UpstreamHost != "acme.internal" {
		t.Errorf("upstream-vhost: %d %q, want a forward with Host acme.internal", x.Reply.Status, x.UpstreamHost)
	}
}

// editedValuesOf returns the value of the field name in fields.
func editedValuesOf(fields []Edit, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func BenchmarkRewrite(b *testing.B) {
	t := &testing.T{}
	l := rewriteListener(t)
	in := &testHead{host: "rw.test", path: "/app/a/b", query: "k=v", uri: "/app/a/b?k=v", header: http.Header{}}
	var x Exchange
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In, x.PeerIP = in, "198.51.100.7"
		l.Decide(&x)
	}
	if x.Target != "/a/b?k=v" {
		b.Fatalf("target %q", x.Target)
	}
}
