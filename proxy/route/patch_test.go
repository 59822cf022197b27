package route

import "testing"

func TestWithBackends(t *testing.T) {
	t.Parallel()
	a := &Backend{Key: "ns/a:80", Endpoints: []Endpoint{{Address: "10.0.0.1:80"}}}
	b := &Backend{Key: "ns/b:80", Endpoints: []Endpoint{{Address: "10.0.0.2:80"}}}
	a2 := &Backend{Key: "ns/a:80", Endpoints: []Endpoint{{Address: "10.0.0.9:80"}}}
	tbl := NewTable([]*VirtualHost{
		NewVirtualHost("one.example.com", []*Route{
			{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(a)},
			{Match: Match{PathType: PathExact, Path: "/b"}, Backends: Single(b)},
		}),
		NewVirtualHost("two.example.com", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(b)}}),
		NewVirtualHost("*.example.com", []*Route{{Match: Match{PathType: PathPrefix, Path: "/api/"}, Backends: Single(a)}}),
		NewVirtualHost("", []*Route{{Match: Match{PathType: PathPrefix, Path: "/"}, Backends: Single(b)}}),
	}, &Route{Backends: Single(a)})
	tbl.WithTLS([]*TLSHost{{Host: "one.example.com"}})

	got := tbl.WithBackends(map[*Backend]*Backend{a: a2})
	for _, tc := range []struct {
		host, path string
		old, new   *Backend
	}{
		{"one.example.com", "/x", a, a2},
		{"one.example.com", "/b", b, b},
		{"two.example.com", "/", b, b},
		{"w.example.com", "/api/v1", a, a2},
		{"other.test", "/", b, b},
		{"w.example.com", "/", b, b}, // the wildcard has no "/": the catch-all serves it
	} {
		if r := got.Lookup(tc.host, tc.path, nil); r == nil || r.First() != tc.new {
			t.Errorf("patched Lookup(%s, %s) = %+v, want backend %s", tc.host, tc.path, r, tc.new.Endpoints[0].Address)
		}
		if r := tbl.Lookup(tc.host, tc.path, nil); r == nil || r.First() != tc.old {
			t.Errorf("original Lookup(%s, %s) changed: %+v", tc.host, tc.path, r)
		}
	}
	if got.Default.First() != a2 || tbl.Default.First() != a {
		t.Errorf("default route: patched %v, original %v", got.Default.First(), tbl.Default.First())
	}
	if got.TLSHost("one.example.com") == nil {
		t.Error("the patched table lost its TLS hosts")
	}
	// Hosts without a replaced backend are shared, not copied.
	for i, vh := range got.VirtualHosts {
		shared := vh == tbl.VirtualHosts[i]
		uses := vh.Host == "one.example.com" || vh.Host == "*.example.com"
		if shared == uses {
			t.Errorf("%q: shared = %v, want %v", vh.Host, shared, !uses)
		}
	}
	if same := tbl.WithBackends(nil); same != tbl {
		t.Error("WithBackends(nil) copied the table")
	}
}
