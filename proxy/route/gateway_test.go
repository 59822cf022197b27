package route

import "testing"

// TestAnyDepthWildcard: a wildcard host with AnyDepth (a Gateway API
// hostname) matches hosts at any depth, the longest suffix first, and a
// patched table keeps it; one without matches one label only.
func TestAnyDepthWildcard(t *testing.T) {
	be := &Backend{Key: "ns/a:80", Endpoints: []Endpoint{{Address: "192.0.2.1:80"}}}
	at := func(src string) []*Route {
		return []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(be), Source: Source{Name: src}}}
	}
	deep := NewVirtualHost("*.example.com", at("deep"))
	deep.AnyDepth = true
	deeper := NewVirtualHost("*.b.example.com", at("deeper"))
	deeper.AnyDepth = true
	tbl := NewTable([]*VirtualHost{deep, deeper, NewVirtualHost("*.ingress.test", at("ingress"))}, nil)
	patched := tbl.WithBackends(map[*Backend]*Backend{be: {Key: be.Key, Endpoints: []Endpoint{{Address: "192.0.2.2:80"}}}})
	for _, tc := range []struct{ host, want string }{
		{"a.example.com", "deep"},
		{"x.y.example.com", "deep"},
		{"x.b.example.com", "deeper"},
		{"x.y.b.example.com", "deeper"},
		{"example.com", ""},
		{"a.ingress.test", "ingress"},
		{"a.b.ingress.test", ""},
	} {
		for name, tb := range map[string]*Table{"built": tbl, "patched": patched} {
			got := ""
			if r := tb.Lookup(tc.host, "/", nil); r != nil {
				got = r.Source.Name
			}
			if got != tc.want {
				t.Errorf("%s: %s routed to %q, want %q", name, tc.host, got, tc.want)
			}
			host := ""
			if vh := tb.Host(tc.host); vh != nil {
				host = vh.Routes[0].Source.Name
			}
			if host != tc.want {
				t.Errorf("%s: Host(%s) is the host of %q, want %q", name, tc.host, host, tc.want)
			}
		}
	}
}

// TestPathModifier: ReplacePrefixMatch replaces whole path elements and
// never doubles a slash; ReplaceFullPath replaces everything.
func TestPathModifier(t *testing.T) {
	for _, tc := range []struct {
		pm   PathModifier
		in   string
		want string
	}{
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/prefix/one", Value: "/one"}, "/prefix/one/two", "/one/two"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/prefix/one", Value: "/one"}, "/prefix/one", "/one"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/prefix/one", Value: "/one"}, "/prefix/one/", "/one/"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/strip", Value: "/"}, "/strip/three", "/three"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/strip", Value: "/"}, "/strip", "/"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/strip", Value: "/"}, "/strip/", "/"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/", Value: "/api"}, "/x", "/api/x"},
		{PathModifier{Type: ReplacePrefixMatch, Prefix: "/a", Value: "/b/"}, "/a/c", "/b/c"},
		{PathModifier{Type: ReplaceFullPath, Value: "/one"}, "/any/thing", "/one"},
	} {
		if got := tc.pm.Apply(tc.in); got != tc.want {
			t.Errorf("%+v on %s = %s, want %s", tc.pm, tc.in, got, tc.want)
		}
	}
}

// TestListenerTables: a table's routes and backends include those of its
// listeners' tables, and Listener finds a listener's table by address.
func TestListenerTables(t *testing.T) {
	t.Parallel()
	web := &Backend{Key: "ns/web:80"}
	api := &Backend{Key: "ns/api:80"}
	sub := NewTable([]*VirtualHost{NewVirtualHost("app.test", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(api)}})}, nil)
	main := NewTable([]*VirtualHost{NewVirtualHost("a.test", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(web)}})}, nil).
		WithListeners([]*Listener{{Address: "203.0.113.9:80", Table: sub}})
	n := 0
	for range main.Routes() {
		n++
	}
	if n != 2 {
		t.Errorf("Routes yields %d routes, want the table's and the listener's", n)
	}
	if bs := main.Backends(); len(bs) != 2 || bs[0] != api || bs[1] != web {
		t.Errorf("Backends = %v, want api and web", bs)
	}
	if main.Listener("203.0.113.9:80") != sub || main.Listener("203.0.113.9:443") != nil {
		t.Error("Listener does not find the listener's table by its address alone")
	}
}

// TestSectionLookup: a table with Sections (a Gateway port's) decides a
// request from the section of the most specific listener hostname its
// Host matches alone, as the listeners of a Gateway are isolated from
// each other, even where a route of another listener names the host;
// within a section, hosts fall back as in any table.
func TestSectionLookup(t *testing.T) {
	be := &Backend{Key: "ns/a:80", Endpoints: []Endpoint{{Address: "192.0.2.1:80"}}}
	route := func(path string) *Route {
		return &Route{Match: Match{PathType: PathPrefix, Path: path}, Backends: Single(be), Source: Source{Name: path[1:]}}
	}
	// Every section's route names all four hosts, as the conformance
	// suite's "intersecting hostnames" routes do.
	section := func(listener, hostname, path string) *Section {
		var vhs []*VirtualHost
		for _, h := range []string{"bar.com", "*.example.com", "*.foo.example.com", "abc.foo.example.com"} {
			vh := NewVirtualHost(h, []*Route{route(path)})
			vh.AnyDepth = true
			vhs = append(vhs, vh)
		}
		if hostname == "" {
			vhs = append(vhs, NewVirtualHost("", []*Route{route("/any")}))
		}
		return &Section{Listener: listener, Hostname: hostname, Table: NewTable(vhs, nil)}
	}
	tbl := Empty()
	tbl.Sections = []*Section{
		section("abc", "abc.foo.example.com", "/abc"),
		section("empty", "", "/empty"),
		section("foo", "*.foo.example.com", "/foo"),
		section("wildcard", "*.example.com", "/wildcard"),
	}
	patched := tbl.WithBackends(map[*Backend]*Backend{be: {Key: be.Key, Endpoints: []Endpoint{{Address: "192.0.2.2:80"}}}})
	for _, tc := range []struct{ host, path, want string }{
		{"bar.com", "/empty", "empty"},
		{"bar.com", "/any", "any"}, // the section's hostless route
		{"bar.com", "/wildcard", ""},
		{"bar.example.com", "/wildcard", "wildcard"},
		{"bar.example.com", "/empty", ""},
		{"bar.example.com", "/any", ""},
		{"bar.foo.example.com", "/foo", "foo"},
		{"x.bar.foo.example.com", "/foo", "foo"},
		{"bar.foo.example.com", "/wildcard", ""},
		{"bar.foo.example.com", "/empty", ""},
		{"abc.foo.example.com", "/abc", "abc"},
		{"abc.foo.example.com", "/foo", ""},
		{"ABC.foo.example.com:80", "/abc", "abc"},
	} {
		for name, tb := range map[string]*Table{"built": tbl, "patched": patched} {
			got := ""
			if r := tb.Lookup(tc.host, tc.path, nil); r != nil {
				got = r.Source.Name
			}
			if got != tc.want {
				t.Errorf("%s: %s%s routed to %q, want %q", name, tc.host, tc.path, got, tc.want)
			}
		}
	}
	if n := len(patched.Backends()); n != 1 || patched.Backends()[0].Endpoints[0].Address != "192.0.2.2:80" {
		t.Errorf("patched table's backends %v, want the replacement only", patched.Backends())
	}
}
