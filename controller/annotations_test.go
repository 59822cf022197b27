package controller

import (
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
		{"empty", map[string]string{AnnotationLoadBalance: ""}, "", `invalid value "" (want round-robin or least-request); using round-robin`},
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
			cfg, problems := parseIngressConfig(tt.annotations)
			if cfg.balancer != tt.balancer {
				t.Errorf("balancer = %q, want %q", cfg.balancer, tt.balancer)
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
		want       backendSettings
		problem    string // a part of the one problem message, or "" for none
	}{
		{AnnotationRetries, "0", backendSettings{retries: -1}, ""},
		{AnnotationRetries, "1", backendSettings{}, ""},
		{AnnotationRetries, "5", backendSettings{retries: 5}, ""},
		{AnnotationRetries, "6", backendSettings{}, `"6" (want a number of retries from 0 to 5); using 1`},
		{AnnotationRetries, "-1", backendSettings{}, `"-1"`},
		{AnnotationRetries, "+2", backendSettings{}, `"+2"`},
		{AnnotationRetries, "18446744073709551617", backendSettings{}, "from 0 to 5"},
		{AnnotationTimeoutConnect, "5s", backendSettings{connectTimeout: route.Duration(5 * time.Second)}, ""},
		{AnnotationTimeoutConnect, "250ms", backendSettings{connectTimeout: route.Duration(250 * time.Millisecond)}, ""},
		{AnnotationTimeoutRead, "90", backendSettings{readTimeout: route.Duration(90 * time.Second)}, ""},
		{AnnotationTimeoutRead, "1m30s", backendSettings{readTimeout: route.Duration(90 * time.Second)}, ""},
		{AnnotationTimeoutRead, "86400", backendSettings{readTimeout: route.Duration(24 * time.Hour)}, ""},
		{AnnotationTimeoutIdle, "24h", backendSettings{idleTimeout: route.Duration(24 * time.Hour)}, ""},
		{AnnotationTimeoutIdle, "86401", backendSettings{}, "(want at most 24h0m0s); using no idle timeout"},
		{AnnotationTimeoutIdle, "24h0m1s", backendSettings{}, "want at most 24h0m0s"},
		{AnnotationTimeoutConnect, "0", backendSettings{}, "(want a positive duration); using the default"},
		{AnnotationTimeoutConnect, "-1s", backendSettings{}, "want a positive duration"},
		{AnnotationTimeoutConnect, "5 s", backendSettings{}, `want a duration like "5s"`},
		{AnnotationTimeoutConnect, "1.5", backendSettings{}, `want a duration like "5s"`},
		{AnnotationTimeoutConnect, "99999999999999999999", backendSettings{}, "want at most 24h0m0s"},
		{AnnotationMaxBodySize, "0", backendSettings{}, ""},
		{AnnotationMaxBodySize, "1024", backendSettings{maxBodySize: 1024}, ""},
		{AnnotationMaxBodySize, "512k", backendSettings{maxBodySize: 512 << 10}, ""},
		{AnnotationMaxBodySize, "8M", backendSettings{maxBodySize: 8 << 20}, ""},
		{AnnotationMaxBodySize, "1g", backendSettings{maxBodySize: 1 << 30}, ""},
		{AnnotationMaxBodySize, "8589934591g", backendSettings{maxBodySize: 8589934591 << 30}, ""},
		{AnnotationMaxBodySize, "8589934592g", backendSettings{}, "(too large); using no limit"},
		{AnnotationMaxBodySize, "9223372036854775808", backendSettings{}, "too large"},
		{AnnotationMaxBodySize, "8mb", backendSettings{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "m", backendSettings{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "-1", backendSettings{}, `want a size like "8m"`},
		{AnnotationMaxBodySize, "1.5m", backendSettings{}, `want a size like "8m"`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			cfg, problems := parseIngressConfig(map[string]string{tt.key: tt.value})
			if cfg.backend != tt.want {
				t.Errorf("settings = %+v, want %+v", cfg.backend, tt.want)
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
		cfg, problems := parseIngressConfig(map[string]string{AnnotationLoadBalance: v, "other": v})
		switch cfg.balancer {
		case "", balancerLeastRequest:
		default:
			t.Fatalf("balancer %q for value %q", cfg.balancer, v)
		}
		valid := v == balancerRoundRobin || v == balancerLeastRequest
		if valid != (len(problems) == 0) || len(problems) > 1 {
			t.Fatalf("value %q: problems %q", v, problems)
		}
		for _, p := range problems {
			checkMessage(t, p)
		}
		// The backend settings: every value is valid or one problem, and
		// what is accepted is in range.
		cfg, problems = parseIngressConfig(map[string]string{
			AnnotationRetries: v, AnnotationTimeoutConnect: v, AnnotationTimeoutRead: v,
			AnnotationTimeoutIdle: v, AnnotationMaxBodySize: v,
		})
		for _, p := range problems {
			checkMessage(t, p)
		}
		set := cfg.backend
		if set.retries < -1 || set.retries > route.MaxRetries || set.maxBodySize < 0 {
			t.Fatalf("value %q: settings %+v out of range", v, set)
		}
		for _, d := range []route.Duration{set.connectTimeout, set.readTimeout, set.idleTimeout} {
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
