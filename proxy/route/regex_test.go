package route

import "testing"

// TestRegexRoutes runs ingress-nginx's use-regex cases (its e2e
// pathtype_prefix.go and rewrite.go, reference §5 items 2, 6 and 7) over
// the expressions the controller writes for them: case-insensitive,
// anchored at the start only, longest path first.
func TestRegexRoutes(t *testing.T) {
	t.Parallel()
	rx := func(path, name string) *Route {
		return &Route{Match: Match{PathType: PathRegex, Path: "(?i)^" + path}, Backends: Single(&Backend{Key: name})}
	}
	vh := NewVirtualHost("app.test", []*Route{
		rx("/id/[0-9]+", "id"),
		rx("/id/[0-9]{3}$", "id3"),
		rx("/id/[0-9]+/post/[a-zA-Z]+$", "post"),
		rx("/foo/bar/bar", "literal"),
		rx("/foo/bar/[a-z]{3}", "class"),
		rx("/foo", "foo"),
		rx("/foo.+", "foo-more"),
		rx("/bad(?=x)", "never"), // look-ahead: RE2 refuses it, so it never matches
	})
	for _, tt := range []struct{ path, want string }{
		{"/id/1", "id"},
		{"/id/12", "id"},
		{"/id/123", "id3"}, // "/id/[0-9]{3}$" is longer, so it is tried first
		{"/id/123a", "id"}, // no end anchor
		{"/id/aaa", ""},
		{"/id/9999", "id"},
		{"/id/123/post/abc", "post"},
		{"/id/123/post/abc123", "id"},
		{"/ID/7", "id"},           // case-insensitive
		{"/foo/bar/bar", "class"}, // the documented first-match trap: the longer expression wins
		{"/foo", "foo"},
		{"/foo/bar", "foo-more"},
		{"/badx", ""},
		{"/x/id/1", ""}, // anchored at the start
	} {
		got := ""
		if r := vh.Match(tt.path, nil); r != nil {
			got = r.First().Key
		}
		if got != tt.want {
			t.Errorf("%s: matched %q, want %q", tt.path, got, tt.want)
		}
	}
	if _, err := CompilePath("(?i)^/bad(?=x)"); err == nil {
		t.Error("CompilePath accepted a look-ahead")
	}
	var order []string
	for _, r := range vh.Routes {
		order = append(order, r.First().Key)
	}
	want := []string{"post", "class", "id3", "literal", "id", "never", "foo-more", "foo"}
	if len(order) != len(want) {
		t.Fatalf("routes %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("routes in order %v, want %v", order, want)
		}
	}
}

// TestRegexAfterPrefix checks that a host's Exact and Prefix routes are
// tried before its regex routes, and that a regex route is kept by an
// endpoint patch.
func TestRegexAfterPrefix(t *testing.T) {
	t.Parallel()
	be := &Backend{Key: "ns/re:80", Endpoints: []Endpoint{{Address: "192.0.2.1:80"}}}
	tbl := NewTable([]*VirtualHost{NewVirtualHost("app.test", []*Route{
		{Match: Match{PathType: PathRegex, Path: "^/a"}, Backends: Single(be)},
		{Match: Match{PathType: PathPrefix, Path: "/a/b"}, Backends: Single(&Backend{Key: "prefix"})},
	})}, nil)
	if r := tbl.Lookup("app.test", "/a/b/c", nil); r == nil || r.First().Key != "prefix" {
		t.Errorf("/a/b/c matched %v, want the Prefix route", r)
	}
	patched := tbl.WithBackends(map[*Backend]*Backend{be: {Key: be.Key, Endpoints: []Endpoint{{Address: "192.0.2.2:80"}}}})
	r := patched.Lookup("app.test", "/ax", nil)
	if r == nil || r.First().Endpoints[0].Address != "192.0.2.2:80" || r.PathExpression() == nil {
		t.Errorf("after the patch /ax matched %+v, want the regex route with the new endpoint", r)
	}
}
