package route

import (
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src      string
		captures bool
		want     []Part // nil with wantErr
		wantErr  string
	}{
		{src: "", want: nil},
		{src: "https://new.example.com", want: []Part{{Kind: VarLiteral, Text: "https://new.example.com"}}},
		{src: "https://new$request_uri", want: []Part{{Kind: VarLiteral, Text: "https://new"}, {Kind: VarRequestURI}}},
		{src: "$scheme://$host$uri$is_args$args", want: []Part{
			{Kind: VarScheme}, {Kind: VarLiteral, Text: "://"}, {Kind: VarHost}, {Kind: VarURI}, {Kind: VarIsArgs}, {Kind: VarArgs},
		}},
		{src: "${request_uri}-text", want: []Part{{Kind: VarRequestURI}, {Kind: VarLiteral, Text: "-text"}}},
		{src: "$http_x_user", want: []Part{{Kind: VarHeader, Name: "X-User"}}},
		{src: "$http_host", want: []Part{{Kind: VarHeader, Name: "Host"}}},
		{src: "$cookie_Session.x", want: []Part{{Kind: VarCookie, Name: "Session"}, {Kind: VarLiteral, Text: ".x"}}},
		{src: "$arg_id", want: []Part{{Kind: VarArg, Name: "id"}}},
		{src: "$binary_remote_addr", want: []Part{{Kind: VarBinaryRemoteAddr}}},
		{src: "/new/$1/$2", captures: true, want: []Part{
			{Kind: VarLiteral, Text: "/new/"}, {Kind: VarCapture, Group: 1}, {Kind: VarLiteral, Text: "/"}, {Kind: VarCapture, Group: 2},
		}},
		// nginx reads one digit.
		{src: "/$12", captures: true, want: []Part{{Kind: VarLiteral, Text: "/"}, {Kind: VarCapture, Group: 1}, {Kind: VarLiteral, Text: "2"}}},
		{src: "/$1", wantErr: "capture group"},
		{src: "/$0", captures: true, wantErr: "$0"},
		{src: "$server_name", wantErr: "not a variable Postern knows"},
		{src: "$http_", wantErr: "not a variable"},
		{src: "a$", wantErr: "must start a variable"},
		{src: "a$-b", wantErr: "must start a variable"},
		{src: "${host", wantErr: "closing"},
		{src: "${ho st}", wantErr: "must start a variable"},
		{src: "a\r\nSet-Cookie: x", wantErr: "control characters"},
		{src: strings.Repeat("a", maxTemplate+1), wantErr: "longer than"},
	} {
		got, err := ParseTemplate(tt.src, tt.captures)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTemplate(%q) error %v, want one with %q", tt.src, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.src, err)
			continue
		}
		if !samePartList(got.Parts(), tt.want) {
			t.Errorf("ParseTemplate(%q) = %+v, want %+v", tt.src, got.Parts(), tt.want)
		}
		if got.String() != tt.src {
			t.Errorf("ParseTemplate(%q).String() = %q", tt.src, got.String())
		}
	}
}

func samePartList(a, b []Part) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTemplateLiteralAndGroups(t *testing.T) {
	t.Parallel()
	if s, ok := MustTemplate("/plain", false).Literal(); !ok || s != "/plain" {
		t.Errorf("Literal of /plain = %q %v", s, ok)
	}
	if _, ok := MustTemplate("/$host", false).Literal(); ok {
		t.Error("a template with $host is not literal")
	}
	if n := MustTemplate("/$2/$1", true).MaxGroup(); n != 2 {
		t.Errorf("MaxGroup = %d, want 2", n)
	}
	var tm Template
	if err := tm.UnmarshalText([]byte("/a/$1$is_args$args")); err != nil || tm.String() != "/a/$1$is_args$args" {
		t.Errorf("UnmarshalText: %v %q", err, tm.String())
	}
	if err := tm.UnmarshalText([]byte("$nope")); err == nil {
		t.Error("UnmarshalText of an unknown variable succeeded")
	}
}

// FuzzParseTemplate checks that parsing never panics, that what parses
// renders back as its source, and that its literal parts and the text
// around its variables add up to the source.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"https://x$request_uri", "${host}-$1", "$http_x_a_b$cookie_c$arg_d", "$", "${", "$1$9$0", "\x00"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, captures bool) {
		tm, err := ParseTemplate(s, captures)
		if err != nil {
			return
		}
		if tm.String() != s {
			t.Fatalf("String() = %q, want %q", tm.String(), s)
		}
		for _, p := range tm.Parts() {
			if p.Kind == VarLiteral && (p.Text == "" || !strings.Contains(s, p.Text) || strings.Contains(p.Text, "$")) {
				t.Fatalf("literal part %q of %q", p.Text, s)
			}
			if p.Kind == VarCapture && (!captures || p.Group < 1 || p.Group > 9) {
				t.Fatalf("capture part %+v of %q (captures %v)", p, s, captures)
			}
			if strings.ContainsAny(p.Text+p.Name, "\r\n\x00") {
				t.Fatalf("control characters in part %+v", p)
			}
		}
	})
}
