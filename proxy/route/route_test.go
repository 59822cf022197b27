package route

import (
	"fmt"
	"strings"
	"testing"
)

func be(name string) *Backend {
	return &Backend{Key: "ns/" + name + ":80", Namespace: "ns", Service: name, Port: "80"}
}

func rt(pt PathType, path, backend string) *Route {
	return &Route{Match: Match{PathType: pt, Path: path}, Backends: Single(be(backend)), Source: Source{Namespace: "ns", Name: "ing"}}
}

// testTable is the table most tests look requests up in.
func testTable() *Table {
	return NewTable([]*VirtualHost{
		NewVirtualHost("foo.example.com", []*Route{
			rt(PathPrefix, "/", "foo-root"),
			rt(PathPrefix, "/api/", "foo-api"),
			rt(PathExact, "/api", "foo-api-exact"),
			rt(PathPrefix, "/api/v1", "foo-v1"),
			rt(PathExact, "/login", "foo-login"),
		}),
		NewVirtualHost("*.example.com", []*Route{
			rt(PathPrefix, "/", "wild-root"),
			rt(PathPrefix, "/shop", "wild-shop"),
		}),
		NewVirtualHost("only-api.example.org", []*Route{
			rt(PathPrefix, "/api", "only-api"),
		}),
		NewVirtualHost("", []*Route{
			rt(PathPrefix, "/healthz", "any-health"),
			rt(PathPrefix, "/static", "any-static"),
		}),
	}, &Route{Backends: Single(be("default"))})
}

func TestLookup(t *testing.T) {
	t.Parallel()
	tbl := testTable()
	tests := []struct {
		host, path, want string
	}{
		// Exact host, longest path, Exact beats Prefix on equal length.
		{"foo.example.com", "/", "foo-root"},
		{"foo.example.com", "/api", "foo-api-exact"},
		{"foo.example.com", "/api/", "foo-api"},
		{"foo.example.com", "/api/x", "foo-api"},
		{"foo.example.com", "/api/v1", "foo-v1"},
		{"foo.example.com", "/api/v1/", "foo-v1"},
		{"foo.example.com", "/api/v1/users", "foo-v1"},
		{"foo.example.com", "/api/v10", "foo-api"},
		{"foo.example.com", "/apix", "foo-root"},
		{"foo.example.com", "/login", "foo-login"},
		{"foo.example.com", "/login/", "foo-root"},
		// Host normalisation: case, port, trailing dot.
		{"FOO.Example.COM", "/api/v1", "foo-v1"},
		{"foo.example.com:8080", "/api/v1", "foo-v1"},
		{"foo.example.com.", "/api/v1", "foo-v1"},
		{"foo.example.com.:443", "/login", "foo-login"},
		// Wildcard: exactly one extra label.
		{"bar.example.com", "/", "wild-root"},
		{"bar.example.com", "/shop/cart", "wild-shop"},
		{"bar.example.com", "/shopping", "wild-root"},
		{"b.a.example.com", "/", "default"},
		{"example.com", "/", "default"},
		// An exact host's own routes come first; what it does not match
		// falls to the catch-all rules, then the default route.
		{"only-api.example.org", "/api/x", "only-api"},
		{"only-api.example.org", "/static/app.js", "any-static"},
		{"only-api.example.org", "/other", "default"},
		{"foo.example.com", "/static/x", "foo-root"},
		// Catch-all rules serve every host.
		{"unknown.test", "/healthz", "any-health"},
		{"", "/static", "any-static"},
		{"[::1]:8080", "/healthz", "any-health"},
		{"10.0.0.1", "/healthz", "any-health"},
		{"unknown.test", "/nothing", "default"},
		// Dot segments and repeated slashes are resolved before matching.
		{"foo.example.com", "/login/../api/v1/x", "foo-v1"},
		{"foo.example.com", "//api//v1", "foo-v1"},
		{"foo.example.com", "/api/./", "foo-api"},
		{"bar.example.com", "/shop/../../etc", "wild-root"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			t.Parallel()
			r := tbl.Lookup(tt.host, tt.path, nil)
			if r == nil {
				t.Fatalf("Lookup(%q, %q) = nil, want %s", tt.host, tt.path, tt.want)
			}
			if r.First().Service != tt.want {
				t.Errorf("Lookup(%q, %q) = %s (%s %s), want %s", tt.host, tt.path, r.First().Service, r.PathType, r.Path, tt.want)
			}
		})
	}
}

func TestLookupNoDefault(t *testing.T) {
	t.Parallel()
	tbl := NewTable([]*VirtualHost{NewVirtualHost("a.test", []*Route{rt(PathExact, "/x", "x")})}, nil)
	for _, c := range [][2]string{{"a.test", "/"}, {"a.test", "/x/"}, {"b.test", "/x"}, {"a.test", ""}, {"a.test", "*"}} {
		if r := tbl.Lookup(c[0], c[1], nil); r != nil {
			t.Errorf("Lookup(%q, %q) = %v, want nil (404)", c[0], c[1], r.First().Service)
		}
	}
	if r := Empty().Lookup("a.test", "/", nil); r != nil {
		t.Errorf("empty table matched %v", r)
	}
}

func TestVirtualHostOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	vh := NewVirtualHost("h", []*Route{
		rt(PathPrefix, "/a", "p-a"),
		rt(PathPrefix, "/a/", "p-a-dup"), // same prefix after normalisation: dropped
		rt(PathExact, "/a", "e-a"),
		rt(PathPrefix, "/abc", "p-abc"),
		rt(PathPrefix, "/", "root"),
		rt(PathExact, "/b", "e-b"),
		rt("Regex", "/x", "unknown-type"), // unknown types are never served
	})
	var got []string
	for _, r := range vh.Routes {
		got = append(got, fmt.Sprintf("%s %s %s", r.PathType, r.Path, r.First().Service))
	}
	want := []string{"Prefix /abc p-abc", "Exact /a e-a", "Exact /b e-b", "Prefix /a p-a", "Prefix / root"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("routes in match order:\n got: %q\nwant: %q", got, want)
	}
}

func TestTableHostOrder(t *testing.T) {
	t.Parallel()
	tbl := NewTable([]*VirtualHost{
		NewVirtualHost("", nil),
		NewVirtualHost("*.b.test", nil),
		NewVirtualHost("z.test", nil),
		NewVirtualHost("a.test", nil),
		NewVirtualHost("*.a.test", nil),
		NewVirtualHost("a.test", []*Route{rt(PathPrefix, "/", "dup")}),
	}, nil)
	var got []string
	for _, vh := range tbl.VirtualHosts {
		got = append(got, vh.Host)
	}
	want := []string{"a.test", "z.test", "*.a.test", "*.b.test", ""}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("hosts = %q, want %q", got, want)
	}
	if tbl.Host("A.TEST").Routes != nil {
		t.Errorf("duplicate host replaced the first one")
	}
	if vh := tbl.Host("x.a.test"); vh == nil || vh.Host != "*.a.test" {
		t.Errorf("Host(x.a.test) = %v, want *.a.test", vh)
	}
}

func TestBackends(t *testing.T) {
	t.Parallel()
	shared := be("shared")
	tbl := NewTable([]*VirtualHost{
		NewVirtualHost("a.test", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(shared)}}),
		NewVirtualHost("b.test", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(shared)}, rt(PathExact, "/x", "x")}),
	}, &Route{Backends: Single(be("def"))})
	var got []string
	for _, b := range tbl.Backends() {
		got = append(got, b.Key)
	}
	if want := "ns/def:80,ns/shared:80,ns/x:80"; strings.Join(got, ",") != want {
		t.Errorf("Backends() = %q, want %q", got, want)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tbl := testTable()
	allocs := testing.AllocsPerRun(1000, func() {
		_ = tbl.Lookup("foo.example.com:8080", "/api/v1/users/42", nil)
		_ = tbl.Lookup("bar.example.com", "/shop/cart", nil)
		_ = tbl.Lookup("unknown.test", "/nothing/here", nil)
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %.1f times per run, want 0", allocs)
	}
}

// FuzzLookup checks that matching never panics, that host case and port
// never change the answer, and that a Prefix match really is an
// element-wise prefix of the cleaned path.
func FuzzLookup(f *testing.F) {
	tbl := testTable()
	for _, s := range [][2]string{
		{"foo.example.com", "/api/v1"}, {"a.example.com:80", "/shop/"}, {"[::1]", "/"},
		{"", ""}, {"x.", "//.."}, {"FOO.EXAMPLE.COM.", "/login/../api"}, {":", "/%2f"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		r := tbl.Lookup(host, path, nil)
		if r2 := tbl.Lookup(asciiUpper(host), path, nil); !strings.HasPrefix(host, "[") && r2 != r {
			t.Fatalf("case changed the answer for %q %q", host, path)
		}
		if r == nil || r.PathType == "" {
			return
		}
		p := cleanPath(path)
		switch r.PathType {
		case PathExact:
			if p != r.Path {
				t.Fatalf("exact route %q matched path %q", r.Path, p)
			}
		case PathPrefix:
			if r.Path != "/" && p != r.Path && !strings.HasPrefix(p, r.Path+"/") {
				t.Fatalf("prefix route %q matched path %q", r.Path, p)
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only: Unicode case mapping can turn a
// non-ASCII byte sequence into ASCII ("ſ" -> "S") and change the host.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
