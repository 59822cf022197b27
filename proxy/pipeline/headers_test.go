package pipeline

import (
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// TestRewriteResponseField: nginx's proxy_redirect (a case-sensitive
// prefix of Location, and of Refresh's URL), proxy_cookie_domain (the
// whole Domain, any case, a leading dot kept) and proxy_cookie_path (a
// case-sensitive prefix of Path), each attribute found as nginx finds it.
func TestRewriteResponseField(t *testing.T) {
	t.Parallel()
	rw := &route.ResponseRewrite{
		RedirectFrom: "http://localhost:8000/two/", RedirectTo: "http://frontend/one/",
		CookieDomainFrom: "localhost", CookieDomainTo: "example.org",
		CookiePathFrom: "/two/", CookiePathTo: "/",
	}
	cases := []struct{ name, in, want string }{
		{"Location", "http://localhost:8000/two/some/uri/", "http://frontend/one/some/uri/"},
		{"location", "http://localhost:8000/two/", "http://frontend/one/"},
		{"Location", "HTTP://LOCALHOST:8000/two/x", "HTTP://LOCALHOST:8000/two/x"},
		{"Location", "/two/relative", "/two/relative"},
		{"Refresh", "3; url=http://localhost:8000/two/x", "3; url=http://frontend/one/x"},
		{"Refresh", "3", "3"},
		{"Set-Cookie", "a=1; domain=localhost; path=/two/some/uri/", "a=1; domain=example.org; path=/some/uri/"},
		{"Set-Cookie", "a=1; Domain=.LocalHost; Path=/Two/", "a=1; Domain=.example.org; Path=/Two/"},
		{"Set-Cookie", "a=1; Domain=sub.localhost", "a=1; Domain=sub.localhost"},
		{"Set-Cookie", "a=1; Path=/two/x; Secure", "a=1; Path=/x; Secure"},
		{"Set-Cookie", "path=/two/", "path=/two/"},
		{"X-Other", "http://localhost:8000/two/", "http://localhost:8000/two/"},
	}
	for _, c := range cases {
		got, changed := RewriteResponseField(rw, c.name, c.in)
		if got != c.want || changed != (c.in != c.want) {
			t.Errorf("%s: %q -> %q (changed %v), want %q", c.name, c.in, got, changed, c.want)
		}
	}
	if got, changed := RewriteResponseField(&route.ResponseRewrite{}, "Location", "http://x/"); changed || got != "http://x/" {
		t.Errorf("no rewrite: %q, %v", got, changed)
	}
}
