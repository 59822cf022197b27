package pipeline

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// corsListener serves cors.test "/" with c, a permanent redirect when
// redirect is set, on a plain listener.
func corsListener(c *route.CORS, redirect bool) *Listener {
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	pol := &route.Policy{CORS: c}
	if redirect {
		tpl, err := route.ParseTemplate("https://elsewhere.test$request_uri", false)
		if err != nil {
			panic(err)
		}
		pol.Redirect = &route.Redirect{URL: tpl, Code: http.StatusMovedPermanently}
	}
	rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(be)}
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("cors.test", []*route.Route{rt})}, nil))
	return p.Listener(ListenerOptions{})
}

// nginxCORS is what enable-cors alone gives, with origins.
func nginxCORS(origins ...string) *route.CORS {
	c := &route.CORS{
		AllowMethods:     "GET, PUT, POST, DELETE, PATCH, OPTIONS",
		AllowHeaders:     "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
		AllowCredentials: true,
		MaxAge:           1728000,
	}
	if len(origins) == 0 {
		c.AnyOrigin = true
	}
	c.AllowOrigins = origins
	return c
}

// The cases of ingress-nginx's e2e annotations/cors.go (reference §5, 34
// and 35): which Origin gets which Access-Control-Allow-Origin.
func TestCORSOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		origins []string
		origin  string // the request's; "" none
		want    string // ACAO; "" none
	}{
		{"any, no origin", nil, "", "*"},
		{"any, an origin", nil, "https://x.test", "*"},
		{"one with port", []string{"https://origin.cors.com:8080"}, "https://origin.cors.com:8080", "https://origin.cors.com:8080"},
		{"second of two", []string{"https://origin.cors.com:8080", "https://origin2.cors.com"}, "https://origin2.cors.com", "https://origin2.cors.com"},
		{"not a member", []string{"http://origin2.cors.com", "https://origin.com"}, "http://no.origin.com", ""},
		{"no origin sent", []string{"https://origin.com"}, "", ""},
		{"similar host", []string{"https://foo.bar.com"}, "https://fooxbar.com", ""},
		{"case", []string{"https://foo.bar.com"}, "HTTPS://Foo.Bar.COM", "HTTPS://Foo.Bar.COM"},
		{"port required", []string{"http://origin.cors.com:8080", "http://origin.com:8080"}, "http://origin.com", ""},
		{"no port wanted", []string{"https://origin2.cors.com", "http://origin.com"}, "http://origin.com:8080", ""},
		{"ports must match", []string{"http://origin.cors.com:8080"}, "http://origin.cors.com:8081", ""},
		{"wildcard one label", []string{"http://*.origin.cors.com", "http://*.origin.com:8080"}, "http://foo.origin.cors.com", "http://foo.origin.cors.com"},
		{"wildcard with dash", []string{"http://*.origin.cors.com"}, "http://bar-foo.origin.cors.com", "http://bar-foo.origin.cors.com"},
		{"wildcard two labels", []string{"http://*.origin.cors.com"}, "http://bar.foo.origin.cors.com", ""},
		{"wildcard no label", []string{"http://*.origin.cors.com"}, "http://.origin.cors.com", ""},
		{"wildcard bare domain", []string{"http://*.origin.cors.com"}, "http://origin.cors.com", ""},
		{"wildcard with port", []string{"http://*.origin.com:8080"}, "http://foo.origin.com:8080", "http://foo.origin.com:8080"},
		{"wildcard portless origin", []string{"http://*.origin.com:8080"}, "http://foo.origin.com", ""},
		{"other schemes", []string{"test://localhost", "tauri://localhost:3000"}, "tauri://localhost:3000", "tauri://localhost:3000"},
		{"null", []string{"null"}, "null", "null"},
		{"scheme differs", []string{"https://a.test"}, "http://a.test", ""},
		// The regex is anchored at the end only.
		{"end anchored only", []string{"https://a.test"}, "xhttps://a.test", "xhttps://a.test"},
		{"control character", []string{"https://a.test"}, "\x01https://a.test", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := corsListener(nginxCORS(tt.origins...), false)
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			x := decide(l, &testHead{host: "cors.test", path: "/", header: h}, nil)
			if x.Endpoint == nil {
				t.Fatalf("not forwarded: %d %s", x.Reply.Status, x.Reply.Reason)
			}
			if got := editedValues(&x.Resp, "Access-Control-Allow-Origin"); got != tt.want {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.want)
			}
			if tt.want == "" && editedValues(&x.Resp, "Access-Control-Allow-Methods") != "" {
				t.Errorf("Access-Control-Allow-Methods sent to an origin not allowed")
			}
		})
	}
}

func TestCORSFields(t *testing.T) {
	t.Parallel()
	origin := http.Header{"Origin": {"https://a.test"}}
	x := decide(corsListener(nginxCORS(), false), &testHead{host: "cors.test", header: origin}, nil)
	want := map[string]string{
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, PUT, POST, DELETE, PATCH, OPTIONS",
		"Access-Control-Allow-Headers":     "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
		"Access-Control-Max-Age":           "1728000",
		"Access-Control-Expose-Headers":    "",
		"Vary":                             "", // ingress-nginx adds none
	}
	for name, v := range want {
		if got := editedValues(&x.Resp, name); got != v {
			t.Errorf("%s %q, want %q", name, got, v)
		}
	}
	c := nginxCORS()
	c.AllowMethods, c.AllowHeaders, c.ExposeHeaders, c.MaxAge, c.AllowCredentials = "POST, GET", "DNT, User-Agent", "X-CustomResponseHeader, X-CustomSecondHeader", 200, false
	x = decide(corsListener(c, false), &testHead{host: "cors.test", header: origin}, nil)
	want = map[string]string{
		"Access-Control-Allow-Credentials": "",
		"Access-Control-Allow-Methods":     "POST, GET",
		"Access-Control-Allow-Headers":     "DNT, User-Agent",
		"Access-Control-Expose-Headers":    "X-CustomResponseHeader, X-CustomSecondHeader",
		"Access-Control-Max-Age":           "200",
	}
	for name, v := range want {
		if got := editedValues(&x.Resp, name); got != v {
			t.Errorf("%s %q, want %q", name, got, v)
		}
	}
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cors     *route.CORS
		origin   string
		redirect bool
		want     int // 0: forwarded
	}{
		{"any origin", nginxCORS(), "https://a.test", false, http.StatusNoContent},
		{"any, even without an origin", nginxCORS(), "", false, http.StatusNoContent},
		{"allowed origin", nginxCORS("https://a.test"), "https://a.test", false, http.StatusNoContent},
		{"other origin proxied", nginxCORS("https://a.test"), "https://b.test", false, 0},
		{"before the redirect", nginxCORS(), "https://a.test", true, http.StatusNoContent},
		{"redirect when not allowed", nginxCORS("https://a.test"), "https://b.test", true, http.StatusMovedPermanently},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			x := decide(corsListener(tt.cors, tt.redirect), &testHead{method: http.MethodOptions, host: "cors.test", path: "/api", header: h}, nil)
			if x.Reply.Status != tt.want {
				t.Fatalf("status %d (%s), want %d", x.Reply.Status, x.Reply.Reason, tt.want)
			}
			if tt.want == http.StatusNoContent {
				if x.Reply.Body != "" || len(x.Reply.Fields) != 1 || x.Reply.Fields[0].Value != "text/plain charset=UTF-8" {
					t.Errorf("preflight answer %+v", x.Reply)
				}
				if editedValues(&x.Resp, "Access-Control-Allow-Methods") == "" {
					t.Error("preflight without Access-Control-Allow-Methods")
				}
			}
			if tt.want == http.StatusMovedPermanently && editedValues(&x.Resp, "Access-Control-Allow-Origin") != "" {
				t.Error("CORS fields for an origin not allowed")
			}
		})
	}
	// A GET of an allowed origin is forwarded, and a redirect answering it
	// carries the fields too (more_set_headers reaches it).
	x := decide(corsListener(nginxCORS(), true), &testHead{host: "cors.test", header: http.Header{"Origin": {"https://a.test"}}}, nil)
	if x.Reply.Status != http.StatusMovedPermanently || editedValues(&x.Resp, "Access-Control-Allow-Origin") != "*" {
		t.Errorf("redirect %d, ACAO %q", x.Reply.Status, editedValues(&x.Resp, "Access-Control-Allow-Origin"))
	}
}

// FuzzOriginPattern checks the matcher against the regex ingress-nginx
// builds for the same pattern.
func FuzzOriginPattern(f *testing.F) {
	f.Add("http://*.origin.cors.com", "http://foo.origin.cors.com")
	f.Add("https://a.test:8080", "xhttps://A.test:8080")
	f.Add("http://*.a", "http://b.c.a")
	f.Fuzz(func(t *testing.T, pattern, origin string) {
		// The patterns the controller accepts (ingress-nginx's corsOriginRegex);
		// nginx's caseless match is ASCII.
		if len(pattern) > 64 || len(origin) > 128 || !validOrigin.MatchString(pattern) || pattern == "" || strings.ContainsFunc(origin, func(r rune) bool { return r >= 0x80 }) {
			return
		}
		p := corsListenerPattern(pattern)
		re := nginxOriginRegex(pattern)
		if got, want := p.matches(origin), re.MatchString(origin); got != want {
			t.Fatalf("pattern %q origin %q: matches %v, regex %v", pattern, origin, got, want)
		}
	})
}

func corsListenerPattern(pattern string) originPattern {
	c, _ := newCORS(&route.Route{Policy: &route.Policy{CORS: &route.CORS{AllowOrigins: []string{pattern}}}})
	return c.origins[0]
}

var validOrigin = regexp.MustCompile(`^([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|null)$`)

// nginxOriginRegex is ingress-nginx's buildOriginRegex inside its
// "~* (...)$" match, in RE2.
func nginxOriginRegex(pattern string) *regexp.Regexp {
	q := regexp.QuoteMeta(pattern)
	q = strings.Replace(q, `\*`, `[A-Za-z0-9\-]+`, 1)
	return regexp.MustCompile(`(?i)(` + q + `)$`)
}

// An HTTPRoute's CORS filter (route.CORS.Gateway), as the conformance
// suite's HTTPRouteCORS checks it: whole-origin matches with '*' for one
// or more labels, the Origin echoed, "*" methods and headers echoing the
// preflight's, credentials only when asked for, no fields for an origin
// not allowed or a request without one.
func TestGatewayCORS(t *testing.T) {
	t.Parallel()
	strict := &route.CORS{Gateway: true, AllowOrigins: []string{"https://www.foo.com", "https://*.bar.com"},
		AllowMethods: "GET, OPTIONS", AllowHeaders: "x-header-1, x-header-2", ExposeHeaders: "x-header-3",
		AllowCredentials: true, MaxAge: 3600}
	wild := &route.CORS{Gateway: true, AllowOrigins: []string{"*"}, AllowMethods: "*", AllowHeaders: "*", MaxAge: 5}
	tests := []struct {
		name   string
		cors   *route.CORS
		method string
		fields map[string]string
		status int               // 0: forwarded
		want   map[string]string // "" for a field that must be absent
	}{
		{"exact origin preflight", strict, http.MethodOptions,
			map[string]string{"Origin": "https://www.foo.com", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-header-1"},
			http.StatusNoContent, map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Methods": "GET, OPTIONS",
				"Access-Control-Allow-Headers": "x-header-1, x-header-2", "Access-Control-Expose-Headers": "x-header-3",
				"Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true"}},
		{"wildcard origin, several labels", strict, http.MethodOptions,
			map[string]string{"Origin": "https://xpto.www.bar.com", "Access-Control-Request-Method": "GET"},
			http.StatusNoContent, map[string]string{"Access-Control-Allow-Origin": "https://xpto.www.bar.com"}},
		{"wildcard needs a label", strict, http.MethodGet, map[string]string{"Origin": "https://.bar.com"}, 0,
			map[string]string{"Access-Control-Allow-Origin": ""}},
		{"not a suffix match", strict, http.MethodGet, map[string]string{"Origin": "https://evil.www.foo.com"}, 0,
			map[string]string{"Access-Control-Allow-Origin": ""}},
		{"origin not allowed, preflight answered without fields", strict, http.MethodOptions,
			map[string]string{"Origin": "https://foobar.com", "Access-Control-Request-Method": "GET"}, http.StatusNoContent,
			map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{"simple request", strict, http.MethodGet, map[string]string{"Origin": "https://www.bar.com"}, 0,
			map[string]string{"Access-Control-Allow-Origin": "https://www.bar.com", "Access-Control-Allow-Credentials": "true", "Access-Control-Allow-Methods": ""}},
		{"OPTIONS without a request method is no preflight", strict, http.MethodOptions, map[string]string{"Origin": "https://www.foo.com"}, 0,
			map[string]string{"Access-Control-Allow-Origin": "https://www.foo.com"}},
		{"no origin", wild, http.MethodGet, nil, 0, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"any origin echoed, methods and headers echoed", wild, http.MethodOptions,
			map[string]string{"Origin": "https://foobar.com:12345", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-a, x-b"},
			http.StatusNoContent, map[string]string{"Access-Control-Allow-Origin": "https://foobar.com:12345", "Access-Control-Allow-Methods": "PUT",
				"Access-Control-Allow-Headers": "x-a, x-b", "Access-Control-Allow-Credentials": "", "Access-Control-Max-Age": "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.fields {
				h.Set(k, v)
			}
			x := decide(corsListener(tt.cors, false), &testHead{method: tt.method, host: "cors.test", path: "/api", header: h}, nil)
			if x.Reply.Status != tt.status {
				t.Fatalf("status %d (%s), want %d", x.Reply.Status, x.Reply.Reason, tt.status)
			}
			for name, want := range tt.want {
				if got := editedValues(&x.Resp, name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}
