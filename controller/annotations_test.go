package controller

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/postern-dev/postern/proxy/route"
)

func TestParseIngressConfig(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", 1<<20)
	tests := []struct {
		name        string
		annotations map[string]string
		balancer    string
		problem     string // a part of the one problem message, or "" for none
	}{
		{"none", nil, "", ""},
		{"other annotations", map[string]string{"example.com/x": "y"}, "", ""},
		{"round-robin", map[string]string{AnnotationLoadBalance: "round-robin"}, "", ""},
		{"least-request", map[string]string{AnnotationLoadBalance: "least-request"}, "least-request", ""},
		{"empty", map[string]string{AnnotationLoadBalance: ""}, "", `invalid value "" (want round-robin, least-request or ewma); using round-robin`},
		{"unknown", map[string]string{AnnotationLoadBalance: "random"}, "", `"random"`},
		{"case", map[string]string{AnnotationLoadBalance: "LEAST-REQUEST"}, "", `"LEAST-REQUEST"`},
		{"spaces", map[string]string{AnnotationLoadBalance: " least-request"}, "", `" least-request"`},
		{"newline", map[string]string{AnnotationLoadBalance: "least-request\n"}, "", `"least-request\n"`},
		{"binary", map[string]string{AnnotationLoadBalance: "\x00\xff\xfe"}, "", `"\x00\xff\xfe"`},
		{"huge", map[string]string{AnnotationLoadBalance: huge}, "", `"` + strings.Repeat("x", maxQuoted) + `"... (1048576 bytes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, problems := parseIngressConfig(tt.annotations, ingressConfig{})
			if got := cfg.backend.fields.Balancer; got != tt.balancer {
				t.Errorf("balancer = %q, want %q", got, tt.balancer)
			}
			switch {
			case tt.problem == "" && len(problems) != 0:
				t.Errorf("problems = %q, want none", problems)
			case tt.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.problem)):
				t.Errorf("problems = %q, want one containing %q", problems, tt.problem)
			}
			for _, p := range problems {
				checkMessage(t, p)
			}
		})
	}
}

func TestParseBackendSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
		want       route.Backend // the backend settings
		policy     route.Policy  // the route policy
		problem    string        // a part of the one problem message, or "" for none
	}{
		{AnnotationRetries, "0", route.Backend{}, route.Policy{Retries: -1}, ""},
		{AnnotationRetries, "1", route.Backend{}, route.Policy{}, ""},
		{AnnotationRetries, "5", route.Backend{}, route.Policy{Retries: 5}, ""},
		{AnnotationRetries, "6", route.Backend{}, route.Policy{}, `"6" (want a number of retries from 0 to 5); using 1`},
		{AnnotationRetries, "-1", route.Backend{}, route.Policy{}, `"-1"`},
		{AnnotationRetries, "+2", route.Backend{}, route.Policy{}, `"+2"`},
		{AnnotationRetries, "18446744073709551617", route.Backend{}, route.Policy{}, "from 0 to 5"},
		{AnnotationTimeoutConnect, "5s", route.Backend{ConnectTimeout: route.Duration(5 * time.Second)}, route.Policy{}, ""},
		{AnnotationTimeoutConnect, "250ms", route.Backend{ConnectTimeout: route.Duration(250 * time.Millisecond)}, route.Policy{}, ""},
		{AnnotationTimeoutRead, "90", route.Backend{}, route.Policy{ReadTimeout: route.Duration(90 * time.Second)}, ""},
		{AnnotationTimeoutRead, "1m30s", route.Backend{}, route.Policy{ReadTimeout: route.Duration(90 * time.Second)}, ""},
		{AnnotationTimeoutRead, "86400", route.Backend{}, route.Policy{ReadTimeout: route.Duration(24 * time.Hour)}, ""},
		{AnnotationTimeoutIdle, "24h", route.Backend{}, route.Policy{IdleTimeout: route.Duration(24 * time.Hour)}, ""},
		{AnnotationTimeoutIdle, "86401", route.Backend{}, route.Policy{}, "(want at most 24h0m0s); using no idle timeout"},
		{AnnotationTimeoutIdle, "24h0m1s", route.Backend{}, route.Policy{}, "want at most 24h0m0s"},
		{AnnotationTimeoutConnect, "0", route.Backend{}, route.Policy{}, "(want a positive duration); using the default"},
		{AnnotationTimeoutConnect, "-1s", route.Backend{}, route.Policy{}, "want a positive duration"},
		{AnnotationTimeoutConnect, "5 s", route.Backend{}, route.Policy{}, `want a duration like "5s"`},
		{AnnotationTimeoutConnect, "1.5", route.Backend{}, route.Policy{}, `want a duration like "5s"`},
		{AnnotationTimeoutConnect, "99999999999999999999", route.Backend{}, route.Policy{}, "want at most 24h0m0s"},
		{AnnotationMaxBodySize, "0", route.Backend{}, route.Policy{}, ""},
		{AnnotationMaxBodySize, "1024", route.Backend{}, route.Policy{MaxBodySize: 1024}, ""},
		{AnnotationMaxBodySize, "512k", route.Backend{}, route.Policy{MaxBodySize: 512 << 10}, ""},
		{AnnotationMaxBodySize, "8M", route.Backend{}, route.Policy{MaxBodySize: 8 << 20}, ""},
		{AnnotationMaxBodySize, "1g", route.Backend{}, route.Policy{MaxBodySize: 1 << 30}, ""},
		{AnnotationMaxBodySize, "8589934591g", route.Backend{}, route.Policy{MaxBodySize: 8589934591 << 30}, ""},
		{AnnotationMaxBodySize, "8589934592g", route.Backend{}, route.Policy{}, "(too large); using no limit"},
		{AnnotationMaxBodySize, "9223372036854775808", route.Backend{}, route.Policy{}, "too large"},
		{AnnotationMaxBodySize, "8mb", route.Backend{}, route.Policy{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "m", route.Backend{}, route.Policy{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "-1", route.Backend{}, route.Policy{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "1.5m", route.Backend{}, route.Policy{}, `want a size like "8m"`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			cfg, problems := parseIngressConfig(map[string]string{tt.key: tt.value}, ingressConfig{})
			if got := cfg.backend.fields; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settings = %+v, want %+v", got, tt.want)
			}
			if cfg.policy != tt.policy {
				t.Errorf("policy = %+v, want %+v", cfg.policy, tt.policy)
			}
			switch {
			case tt.problem == "" && len(problems) != 0:
				t.Errorf("problems = %q, want none", problems)
			case tt.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.problem)):
				t.Errorf("problems = %q, want one containing %q", problems, tt.problem)
			}
			for _, p := range problems {
				checkMessage(t, p)
			}
		})
	}
}

// TestAnnotationRows checks that every postern.dev annotation has exactly
// one row.
func TestAnnotationRows(t *testing.T) {
	t.Parallel()
	want := []string{
		AnnotationLoadBalance, AnnotationSSLRedirect, AnnotationHSTS, AnnotationBackendProtocol, AnnotationACME,
		AnnotationRetries, AnnotationTimeoutConnect, AnnotationTimeoutRead, AnnotationTimeoutIdle, AnnotationMaxBodySize,
		AnnotationRequestHeaders, AnnotationResponseHeaders,
	}
	rows := make(map[string]int)
	for _, r := range ingressAnnotations {
		rows[r.key]++
	}
	for _, k := range want {
		if rows[k] != 1 {
			t.Errorf("annotation %s has %d rows, want 1", k, rows[k])
		}
		delete(rows, k)
	}
	for k := range rows {
		t.Errorf("row %s is not in this test's list", k)
	}
}

// TestBackendSettingsID checks what the backend rows put in a backend's
// Key: every setting of the Service port changed, in the rows' order, and
// nothing for values that ask for the default or for the route policy's
// settings, so that those backends are shared with the backends of
// Ingresses without annotations.
func TestBackendSettingsID(t *testing.T) {
	t.Parallel()
	cfg, problems := parseIngressConfig(map[string]string{
		AnnotationMaxBodySize: "8m", AnnotationTimeoutIdle: "24h", AnnotationTimeoutRead: "90",
		AnnotationTimeoutConnect: "5s", AnnotationRetries: "0", AnnotationBackendProtocol: "grpc",
		AnnotationLoadBalance: "least-request",
	}, ingressConfig{})
	if len(problems) != 0 {
		t.Fatalf("problems: %q", problems)
	}
	const want = "|least-request|GRPC|connect-timeout=5s"
	if cfg.backend.id != want {
		t.Errorf("id = %q, want %q", cfg.backend.id, want)
	}
	wantPolicy := route.Policy{Retries: -1, ReadTimeout: route.Duration(90 * time.Second), IdleTimeout: route.Duration(24 * time.Hour), MaxBodySize: 8 << 20}
	if cfg.policy != wantPolicy {
		t.Errorf("policy = %+v, want %+v", cfg.policy, wantPolicy)
	}
	defaults, problems := parseIngressConfig(map[string]string{
		AnnotationLoadBalance: "round-robin", AnnotationBackendProtocol: "HTTP", AnnotationRetries: "1", AnnotationMaxBodySize: "0",
	}, ingressConfig{})
	if none, _ := parseIngressConfig(nil, ingressConfig{}); len(problems) != 0 || !reflect.DeepEqual(defaults, none) || defaults.backend.id != "" {
		t.Errorf("default values give %+v (problems %q), want %+v", defaults, problems, none)
	}
	if !defaults.tls.host.Redirect {
		t.Error("spec.tls hosts do not redirect by default")
	}
	if off, _ := parseIngressConfig(map[string]string{AnnotationSSLRedirect: "false"}, ingressConfig{}); off.tls.host.Redirect {
		t.Errorf("%s: false still redirects", AnnotationSSLRedirect)
	}
}

// TestAnnotationReuse shows the generic parser with a strconv parser, as
// the annotations to come (ssl-redirect, timeouts, retries) will use it:
// strconv's error, which repeats the whole value, is not repeated.
func TestAnnotationReuse(t *testing.T) {
	t.Parallel()
	const key = "postern.dev/example-bool"
	var problems []string
	if v := annotation(map[string]string{key: "false"}, key, true, "true", strconv.ParseBool, &problems); v || len(problems) != 0 {
		t.Errorf("valid value: got %v, problems %q", v, problems)
	}
	if v := annotation(map[string]string{}, key, true, "true", strconv.ParseBool, &problems); !v || len(problems) != 0 {
		t.Errorf("absent: got %v, problems %q", v, problems)
	}
	huge := strings.Repeat("y", 100_000)
	if v := annotation(map[string]string{key: huge}, key, true, "true", strconv.ParseBool, &problems); !v || len(problems) != 1 {
		t.Fatalf("invalid value: got %v, problems %d", v, len(problems))
	}
	want := `annotation postern.dev/example-bool has an invalid value "` + strings.Repeat("y", maxQuoted) + `"... (100000 bytes) (invalid syntax); using true`
	if problems[0] != want {
		t.Errorf("message:\n got %q\nwant %q", problems[0], want)
	}
}

func TestQuoteShort(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{"a\nb\"c", `"a\nb\"c"`},
		{"\xff", `"\xff"`},
		{"caf\u00e9", `"caf\u00e9"`},
		{"\u212a", `"\u212a"`}, // the Kelvin sign must not look like "K"
		{strings.Repeat("a", maxQuoted), `"` + strings.Repeat("a", maxQuoted) + `"`},
		{strings.Repeat("a", maxQuoted+1), `"` + strings.Repeat("a", maxQuoted) + `"... (65 bytes)`},
		// A cut inside "é" moves back to before it.
		{strings.Repeat("a", maxQuoted-1) + "é", `"` + strings.Repeat("a", maxQuoted-1) + `"... (65 bytes)`},
		// A three-byte character straddling the cut.
		{strings.Repeat("a", maxQuoted-2) + "€", `"` + strings.Repeat("a", maxQuoted-2) + `"... (65 bytes)`},
	}
	for _, tt := range tests {
		if got := quoteShort(tt.in); got != tt.want {
			t.Errorf("quoteShort(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// checkMessage checks what every problem message must be: one short line
// of valid UTF-8.
func checkMessage(t *testing.T, msg string) {
	t.Helper()
	if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r\x00") || len(msg) > 512 {
		t.Fatalf("bad message (%d bytes): %q", len(msg), msg)
	}
}

// FuzzAnnotations checks that any annotation value is either a valid
// policy or a problem with a short, one-line, valid UTF-8 message, and that
// the Ingress always gets a valid policy; likewise for the retries,
// timeouts and body size, which always end up in range.
func FuzzAnnotations(f *testing.F) {
	for _, s := range []string{"", "round-robin", "least-request", "random", "least-request\n", "\xff\xfe",
		"0", "5", "6", "90", "1m30s", "-1s", "8m", "512K", "8589934592g", "99999999999999999999",
		strings.Repeat("é", 100), strings.Repeat("a", 63) + "\u20ac", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cfg, problems := parseIngressConfig(map[string]string{AnnotationLoadBalance: v, "other": v}, ingressConfig{})
		switch b := cfg.backend.fields.Balancer; b {
		case "", balancerLeastRequest:
		default:
			t.Fatalf("balancer %q for value %q", b, v)
		}
		valid := v == balancerRoundRobin || v == balancerLeastRequest
		if valid != (len(problems) == 0) || len(problems) > 1 {
			t.Fatalf("value %q: problems %q", v, problems)
		}
		for _, p := range problems {
			checkMessage(t, p)
		}
		// The backend settings and route policy: every value is valid or
		// one problem, and
		// what is accepted is in range.
		cfg, problems = parseIngressConfig(map[string]string{
			AnnotationRetries: v, AnnotationTimeoutConnect: v, AnnotationTimeoutRead: v,
			AnnotationTimeoutIdle: v, AnnotationMaxBodySize: v,
		}, ingressConfig{})
		for _, p := range problems {
			checkMessage(t, p)
		}
		set, pol := cfg.backend.fields, cfg.policy
		if pol.Retries < -1 || pol.Retries > route.MaxRetries || pol.MaxBodySize < 0 {
			t.Fatalf("value %q: policy %+v out of range", v, pol)
		}
		for _, d := range []route.Duration{set.ConnectTimeout, pol.ReadTimeout, pol.IdleTimeout} {
			if d < 0 || time.Duration(d) > maxTimeout {
				t.Fatalf("value %q: timeout %s out of range", v, time.Duration(d))
			}
		}
		if len(problems) > 5 {
			t.Fatalf("value %q: %d problems for 5 annotations", v, len(problems))
		}
		// HSTS: what is accepted is rebuilt from parsed directives, so it
		// parses again to itself and holds nothing but them.
		if h, err := parseHSTS(v); err == nil && h != "" {
			if again, err := parseHSTS(h); err != nil || again != h || strings.ContainsAny(h, "\r\n\x00\"") {
				t.Fatalf("parseHSTS(%q) = %q, which parses to %q, %v", v, h, again, err)
			}
		}
		if len(v) <= maxQuoted {
			if q := quoteShort(v); mustUnquote(t, q) != v {
				t.Fatalf("quoteShort(%q) = %s does not round-trip", v, q)
			}
		}
	})
}

func mustUnquote(t *testing.T, q string) string {
	t.Helper()
	s, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("unquote %s: %v", q, err)
	}
	return s
}

// TestHeaderEditsAnnotation: the lines of postern.dev/request-headers and
// response-headers, and what they refuse (the whole annotation, with one
// problem naming the line).
func TestHeaderEditsAnnotation(t *testing.T) {
	t.Parallel()
	good := "# security headers\nset x-frame-options: DENY\n\n  add X-Client: $remote_addr  \nremove X-Powered-By\nSET Cache-Control: no-store, max-age=0"
	cfg, problems := parseIngressConfig(map[string]string{AnnotationResponseHeaders: good}, ingressConfig{})
	if len(problems) != 0 || cfg.policy.ResponseHeaders == nil {
		t.Fatalf("problems %q, edits %v", problems, cfg.policy.ResponseHeaders)
	}
	var got []string
	for _, e := range *cfg.policy.ResponseHeaders {
		s := string(e.Op) + " " + e.Name
		if e.Value != nil {
			s += ": " + e.Value.String()
		}
		got = append(got, s)
	}
	want := []string{"set X-Frame-Options: DENY", "add X-Client: $remote_addr", "remove X-Powered-By", "set Cache-Control: no-store, max-age=0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edits %q, want %q", got, want)
	}
	for v, msg := range map[string]string{
		"set X-A":                 `line 1: set needs "Name: value"`,
		"set X-A: b\nreplace X-B": `line 2: unknown edit "replace"`,
		"set Content-Length: 5":   "Content-Length is the proxy's own field",
		"remove host":             "Host is the proxy's own field",
		"set X A: b":              `"X A" is not a header name`,
		"set X-A: $server_name":   "server_name",
		"# nothing":               "want lines",
		strings.Repeat("set X-A: b\n", maxHeaderEdits+1): "more than 64 edits",
	} {
		cfg, problems := parseIngressConfig(map[string]string{AnnotationRequestHeaders: v}, ingressConfig{})
		if cfg.policy.RequestHeaders != nil || len(problems) != 1 || !strings.Contains(problems[0], msg) {
			t.Errorf("%q: edits %v, problems %q; want none and one containing %q", v, cfg.policy.RequestHeaders, problems, msg)
		}
	}
}
