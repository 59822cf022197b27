package controller

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

func TestParseHtpasswd(t *testing.T) {
	t.Parallel()
	data := "# comment\n" +
		"foo:{PLAIN}a\n" +
		"\n" +
		"bar:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=:comment\r\n" +
		" spaced :{PLAIN}b\n" +
		"nocolon\n" +
		"empty:\n" +
		"foo:{PLAIN}second" // no final newline
	users, bad := parseHtpasswd(data)
	var got []string
	for _, u := range users {
		got = append(got, u.Name+"="+u.Hash+"("+u.Scheme+")")
	}
	want := []string{"foo={PLAIN}a(plain)", "bar={SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=(sha)", " spaced ={PLAIN}b(plain)", "empty=()", "foo={PLAIN}second(plain)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("users %q, want %q", got, want)
	}
	if fmt.Sprint(bad) != "[6 7]" {
		t.Errorf("bad lines %v, want [6 7]", bad)
	}
}

// FuzzHtpasswd: reading any Secret content never panics, every user has
// a name without a line break, and a user's scheme is what ParseHash says
// of its hash.
func FuzzHtpasswd(f *testing.F) {
	for _, s := range []string{"foo:$2y$05$abcdefghijklmnopqrstuuYx6Sm0Mh7sK7tbiF0VmKvcpZ7j8Tf1a\n", "a:b:c\r\nd", "#x\n\n:", "u:$apr1$$", "u:$6$rounds=1$s$h", "u:{SSHA}!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		users, bad := parseHtpasswd(data)
		lines := strings.Count(data, "\n") + 1
		for _, l := range bad {
			if l < 1 || l > lines {
				t.Fatalf("bad line %d of %d", l, lines)
			}
		}
		for _, u := range users {
			if strings.ContainsAny(u.Name, "\n:") || strings.ContainsAny(u.Hash, "\r\n:") {
				t.Fatalf("user %q hash %q", u.Name, u.Hash)
			}
			if s, m := route.ParseHash(u.Hash); s != u.Scheme || (s == "") != (m == nil) {
				t.Fatalf("hash %q: scheme %q, ParseHash %q %v", u.Hash, u.Scheme, s, m)
			}
		}
	})
}

func TestParseCacheDurations(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"200 202 10m, 401 5m", "[{[200 202] 10m0s} {[401] 5m0s}]"},
		{"any 1h", "[{[] 1h0m0s}]"},
		{"30s", "[{[200 301 302] 30s}]"},
		{"200 1d,,", "[{[200] 24h0m0s}]"},
		{"10 minutes", "error"},
		{"2000 5m", "error"},
		{"200", "error"},
		{"", "error"},
	}
	for _, tt := range tests {
		c, err := parseCacheDurations(tt.in)
		got := "error"
		if err == nil {
			var parts []string
			for _, d := range c {
				parts = append(parts, fmt.Sprintf("{%v %v}", d.Codes, time.Duration(d.TTL)))
			}
			got = "[" + strings.Join(parts, " ") + "]"
		}
		if got != tt.want {
			t.Errorf("%q: %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseGlobalAuth(t *testing.T) {
	t.Parallel()
	ea, err := ParseGlobalAuth("http://sso.auth.svc/verify?h=$host", "POST", "https://sso.example.com/start", "X-User, X-Email")
	if err != nil {
		t.Fatal(err)
	}
	if ea.URL.String() != "http://sso.auth.svc/verify?h=$host" || ea.Method != http.MethodPost || ea.Signin.String() != "https://sso.example.com/start" ||
		fmt.Sprint(ea.ResponseHeaders) != "[X-User X-Email]" || !ea.Global {
		t.Errorf("global auth %+v", ea)
	}
	if ea, err := ParseGlobalAuth("", "", "", ""); ea != nil || err != nil {
		t.Errorf("no flags: %v %v", ea, err)
	}
	for _, bad := range [][4]string{
		{"ftp://x/", "", "", ""},
		{"http://x/$nope", "", "", ""},
		{"http://x/", "get", "", ""},
		{"http://x/", "", "", "X:Y"},
		{"", "GET", "", ""},
	} {
		if _, err := ParseGlobalAuth(bad[0], bad[1], bad[2], bad[3]); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line", bad, err)
		}
	}
}
