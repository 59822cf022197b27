package route

import (
	"net/textproto"
	"net/url"
	"testing"
)

// req is a Request made of a method, a header and a raw query.
type req struct {
	method string
	header textproto.MIMEHeader
	query  string
}

func (r *req) Method() string   { return r.method }
func (r *req) RawQuery() string { return r.query }
func (r *req) Header(name string) (string, int) {
	vs := r.header[name]
	if len(vs) == 0 {
		return "", 0
	}
	return vs[0], len(vs)
}

func condRoute(path, backend string, m Match) *Route {
	m.PathType, m.Path = PathPrefix, path
	return &Route{Match: m, Backends: Single(be(backend))}
}

func mustRegex(t testing.TB, name, expr string) FieldMatch {
	t.Helper()
	f, err := RegexField(name, expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// condTable has routes of one path told apart by their conditions, given
// in an order that is not their precedence.
func condTable(t testing.TB) *Table {
	return NewTable([]*VirtualHost{NewVirtualHost("c.test", []*Route{
		condRoute("/", "root", Match{}),
		condRoute("/api", "api-plain", Match{}),
		condRoute("/api", "api-one-query", Match{Query: []FieldMatch{ExactField("v", "2")}}),
		condRoute("/api", "api-one-header", Match{Headers: []FieldMatch{ExactField("x-env", "canary")}}),
		condRoute("/api", "api-two-headers", Match{Headers: []FieldMatch{ExactField("X-Env", "canary"), mustRegex(t, "X-User", "[a-z]+-[0-9]+")}}),
		condRoute("/api", "api-post", Match{Method: "POST"}),
		condRoute("/api/v1", "v1-get", Match{Method: "GET"}),
		condRoute("/api/v1", "v1-bad-regex", Match{Headers: []FieldMatch{{Name: "X-Env", Type: MatchRegularExpression, Value: "("}}}),
	})}, nil)
}

func TestLookupConditions(t *testing.T) {
	t.Parallel()
	tbl := condTable(t)
	h := func(kv ...string) textproto.MIMEHeader {
		out := textproto.MIMEHeader{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name string
		path string
		req  *req
		want string
	}{
		{"no conditions asked", "/api/x", &req{method: "GET"}, "api-plain"},
		{"method wins over headers", "/api", &req{method: "POST", header: h("X-Env", "canary", "X-User", "ann-1")}, "api-post"},
		{"most headers", "/api", &req{method: "GET", header: h("X-Env", "canary", "X-User", "ann-1")}, "api-two-headers"},
		{"regex must match whole value", "/api", &req{method: "GET", header: h("X-Env", "canary", "X-User", "ann-1x")}, "api-one-header"},
		{"header name from any case", "/api", &req{method: "GET", header: h("X-Env", "canary")}, "api-one-header"},
		{"header value is case-sensitive", "/api", &req{method: "GET", header: h("X-Env", "Canary")}, "api-plain"},
		{"first header field counts", "/api", &req{method: "GET", header: h("X-Env", "prod", "X-Env", "canary")}, "api-plain"},
		{"headers beat query", "/api", &req{method: "GET", header: h("X-Env", "canary"), query: "v=2"}, "api-one-header"},
		{"query", "/api", &req{method: "GET", query: "a=1&v=2"}, "api-one-query"},
		{"first query parameter counts", "/api", &req{method: "GET", query: "v=1&v=2"}, "api-plain"},
		{"query unescaped", "/api", &req{method: "GET", query: "%76=%32"}, "api-one-query"},
		{"query bad escape", "/api", &req{method: "GET", query: "v=%zz"}, "api-plain"},
		{"query name is case-sensitive", "/api", &req{method: "GET", query: "V=2"}, "api-plain"},
		{"method is case-sensitive", "/api", &req{method: "post"}, "api-plain"},
		{"longer path wins over conditions", "/api/v1", &req{method: "GET", header: h("X-Env", "canary")}, "v1-get"},
		{"shorter path when conditions fail", "/api/v1", &req{method: "PUT", header: h("X-Env", "canary")}, "api-one-header"},
		{"invalid regex never matches", "/api/v1/x", &req{method: "PUT", header: h("X-Env", "(")}, "api-plain"},
		{"nil request: only routes without conditions", "/api/v1", nil, "api-plain"},
	}
	for _, tt := range tests {
		var r *Route
		if tt.req == nil {
			r = tbl.Lookup("c.test", tt.path, nil)
		} else {
			r = tbl.Lookup("c.test", tt.path, tt.req)
		}
		if r == nil || r.First().Service != tt.want {
			t.Errorf("%s: got %v, want %s", tt.name, r, tt.want)
		}
	}
}

func TestVirtualHostConditionsOrder(t *testing.T) {
	t.Parallel()
	vh := condTable(t).VirtualHosts[0]
	var got []string
	for _, r := range vh.Routes {
		got = append(got, r.First().Service)
	}
	want := []string{"v1-get", "v1-bad-regex", "api-post", "api-two-headers", "api-one-header", "api-one-query", "api-plain", "root"}
	if len(got) != len(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("routes %v, want %v", got, want)
		}
	}
	// The header names were made canonical on a copy: the caller's
	// route is unchanged.
	if n := vh.Routes[4].Headers[0].Name; n != "X-Env" {
		t.Errorf("header name %q, want X-Env", n)
	}
}

func TestVirtualHostDropsDuplicateConditions(t *testing.T) {
	t.Parallel()
	vh := NewVirtualHost("d.test", []*Route{
		condRoute("/", "first", Match{Method: "GET", Headers: []FieldMatch{ExactField("a", "1")}}),
		condRoute("/", "second", Match{Method: "GET", Headers: []FieldMatch{ExactField("A", "1")}}),
		condRoute("/", "other-value", Match{Method: "GET", Headers: []FieldMatch{ExactField("A", "2")}}),
		condRoute("/", "regex", Match{Method: "GET", Headers: []FieldMatch{mustRegex(t, "A", "1")}}),
	})
	var got []string
	for _, r := range vh.Routes {
		got = append(got, r.First().Service)
	}
	if len(got) != 3 || got[0] != "first" || got[1] != "other-value" || got[2] != "regex" {
		t.Errorf("routes %v, want [first other-value regex]", got)
	}
}

func TestRegexField(t *testing.T) {
	t.Parallel()
	if _, err := RegexField("X", "a(b"); err == nil {
		t.Error("an invalid expression was accepted")
	}
	f := mustRegex(t, "X", "a|b")
	for v, want := range map[string]bool{"a": true, "b": true, "ab": false, "xa": false, "": false} {
		if got := f.matches(v); got != want {
			t.Errorf("a|b matches %q = %v, want %v", v, got, want)
		}
	}
}

func TestLookupConditionsDoNotAllocate(t *testing.T) {
	tbl := condTable(t)
	r := &req{method: "GET", header: textproto.MIMEHeader{"X-Env": {"canary"}, "X-User": {"ann-1"}}, query: "a=1&v=2"}
	if n := testing.AllocsPerRun(100, func() {
		if tbl.Lookup("c.test", "/api/v1/items", r) == nil {
			t.Fatal("no route")
		}
	}); n != 0 {
		t.Errorf("Lookup with conditions allocates %.1f times", n)
	}
}

func TestQueryParam(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		raw, name, want string
		ok              bool
	}{
		{"a=1&b=2", "b", "2", true},
		{"a", "a", "", true},
		{"a=", "a", "", true},
		{"b=1&a=x+y", "a", "x y", true},
		{"a%3D=1", "a=", "1", true},
		{"", "a", "", false},
		{"ab=1", "a", "", false},
		{"&&a=1", "a", "1", true},
	} {
		v, ok := queryParam(tt.raw, tt.name)
		if v != tt.want || ok != tt.ok {
			t.Errorf("queryParam(%q, %q) = %q, %v; want %q, %v", tt.raw, tt.name, v, ok, tt.want, tt.ok)
		}
		// Agree with net/url where it parses.
		if q, err := url.ParseQuery(tt.raw); err == nil && tt.ok {
			if q.Get(tt.name) != v {
				t.Errorf("queryParam(%q, %q) = %q, net/url says %q", tt.raw, tt.name, v, q.Get(tt.name))
			}
		}
	}
}

// FuzzLookupConditions checks what a route with conditions may be given:
// only requests with its method, and its query parameter as net/url reads
// it where net/url parses the query.
func FuzzLookupConditions(f *testing.F) {
	tbl := condTable(f)
	for _, s := range [][4]string{
		{"/api", "GET", "canary", "v=2"}, {"/api/v1", "POST", "", "%76=2"}, {"/", "", "", "&&"}, {"/api", "GET", "x", "v=%zz"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, path, method, env, query string) {
		r := &req{method: method, header: textproto.MIMEHeader{"X-Env": {env}}, query: query}
		got := tbl.Lookup("c.test", path, r)
		if got == nil {
			return
		}
		if got.Method != "" && got.Method != method {
			t.Fatalf("route for %s served %s", got.Method, method)
		}
		for _, h := range got.Headers {
			if h.Name == "X-Env" && h.Type != MatchRegularExpression && h.Value != env {
				t.Fatalf("route for X-Env %q served %q", h.Value, env)
			}
		}
		if q, err := url.ParseQuery(query); err == nil {
			for _, qm := range got.Query {
				if vs := q[qm.Name]; len(vs) == 0 || vs[0] != qm.Value {
					t.Fatalf("route for %s=%s served query %q", qm.Name, qm.Value, query)
				}
			}
		}
	})
}
