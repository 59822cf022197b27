package pipeline

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	in := &testHead{
		method: http.MethodPost, host: "Shop.Example.com:8080", path: "/a b/c", uri: "/a%20b/c?x=1&ID=7&e",
		query: "x=1&ID=7&e",
		header: http.Header{
			"X-User": {"alice", "bob"},
			"Cookie": {"theme=dark; Session = s1 ", "session=s2"},
		},
	}
	x := &Exchange{In: in, PeerIP: "192.0.2.9", ClientIP: "198.51.100.7", Secure: true}
	groups := []string{"/a b/c", "a b", "c"}
	for _, tt := range []struct{ src, want string }{
		{"https://new.example.com$request_uri", "https://new.example.com/a%20b/c?x=1&ID=7&e"},
		{"$scheme://$host$uri$is_args$args", "https://shop.example.com/a b/c?x=1&ID=7&e"},
		{"$http_x_user|$http_x_none|", "alice||"},
		{"$cookie_session", "s1"},
		{"$cookie_THEME", "dark"},
		{"$cookie_none.", "."},
		{"$arg_id $arg_x $arg_e $arg_none", "7 1  "},
		{"$remote_addr", "198.51.100.7"},
		{"$request_method", "POST"},
		{"/new/$2/$1/$3", "/new/c/a b/"},
		{"${request_uri}-text", "/a%20b/c?x=1&ID=7&e-text"},
	} {
		tm := route.MustTemplate(tt.src, true)
		if got := x.ExpandString(tm, groups); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.src, got, tt.want)
		}
	}
	if got := x.Expand(nil, route.MustTemplate("$binary_remote_addr", false), nil); string(got) != "\xc6\x33\x64\x07" {
		t.Errorf("$binary_remote_addr = %q", got)
	}
	plain := &Exchange{In: &testHead{host: "h"}, PeerIP: "192.0.2.9"}
	if got := plain.ExpandString(route.MustTemplate("$remote_addr$is_args$args", false), nil); got != "192.0.2.9" {
		t.Errorf("before the forwarding policy, $remote_addr$is_args$args = %q", got)
	}
}

func TestExpandAllocations(t *testing.T) {
	x := &Exchange{In: &testHead{host: "h", path: "/p", uri: "/p?a=1", query: "a=1", header: http.Header{"Cookie": {"k=v"}}}}
	tm := route.MustTemplate("$scheme://$host$request_uri$cookie_k$arg_a", false)
	buf := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() { buf = x.Expand(buf[:0], tm, nil) }); n != 0 {
		t.Errorf("Expand allocates %v times", n)
	}
	lit := route.MustTemplate("https://example.com/", false)
	if n := testing.AllocsPerRun(100, func() { _ = x.ExpandString(lit, nil) }); n != 0 {
		t.Errorf("ExpandString of a literal allocates %v times", n)
	}
}

// FuzzExpand expands any template that parses against any request parts:
// it must not panic, and a template without variables expands to itself.
func FuzzExpand(f *testing.F) {
	f.Add("$scheme://$host$request_uri", "h:80", "/p", "a=1", "k=v; x", "/p")
	f.Add("/$1/$9$cookie_k$arg_A", "[::1]:1", "/", "A=&a=2", ";;=", "")
	f.Fuzz(func(t *testing.T, src, host, path, query, cookie, group string) {
		tm, err := route.ParseTemplate(src, true)
		if err != nil {
			return
		}
		x := &Exchange{In: &testHead{host: host, path: path, query: query, header: http.Header{"Cookie": {cookie}}}, ClientIP: "::1"}
		got := x.ExpandString(tm, []string{group, group})
		if s, ok := tm.Literal(); ok && got != s {
			t.Fatalf("literal %q expanded to %q", s, got)
		}
	})
}
