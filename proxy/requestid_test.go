package proxy

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestIDThroughProxy(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		// A backend that sets an ID of its own: the client still sees
		// one, the proxy's.
		w.Header().Set(HeaderRequestID, "backend-made")
		_, _ = w.Write([]byte(r.Header.Get(HeaderRequestID)))
	})
	addr, _ := startProxy(t, route.NewTable([]*route.VirtualHost{
		vhost("app.test", prefix("/", backendOf("b", "", b))),
	}, nil), Options{})
	c := newClient(t)

	tests := []struct {
		name string
		sent []string // nil: no header
		keep bool
	}{
		{"none", nil, false},
		{"valid", []string{"req-1:abc/DEF_~!"}, true},
		{"longest valid", []string{strings.Repeat("x", 200)}, true},
		{"too long", []string{strings.Repeat("x", 201)}, false},
		{"empty", []string{""}, false},
		{"space", []string{"two words"}, false},
		{"non-ascii", []string{"caf\u00e9"}, false},
		{"two values", []string{"a", "b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.test"
			if tt.sent != nil {
				req.Header[HeaderRequestID] = tt.sent
			}
			resp, body := do(t, c, req)
			got := resp.Header.Values(HeaderRequestID)
			if len(got) != 1 {
				t.Fatalf("response X-Request-ID = %q, want exactly one", got)
			}
			if body != got[0] {
				t.Errorf("backend got X-Request-ID %q, client got %q: want the same", body, got[0])
			}
			switch {
			case tt.keep && got[0] != tt.sent[0]:
				t.Errorf("valid ID %q replaced by %q", tt.sent[0], got[0])
			case !tt.keep && !generatedID.MatchString(got[0]):
				t.Errorf("sent %q, got %q; want a generated ID (32 hex digits)", tt.sent, got[0])
			}
		})
	}
}

func TestRequestIDOnProxyAnswers(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{
		vhost("app.test", prefix("/", &route.Backend{Key: "ns/none:80"})),
	}, nil))
	for _, tt := range []struct {
		host string
		want int
	}{{"nowhere.test", http.StatusNotFound}, {"app.test", http.StatusServiceUnavailable}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+tt.host+"/", nil)
		req.Header.Set(HeaderRequestID, "from-client")
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want || rec.Header().Get(HeaderRequestID) != "from-client" {
			t.Errorf("%s: %d with X-Request-ID %q, want %d with the client's", tt.host, rec.Code, rec.Header().Get(HeaderRequestID), tt.want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"a": true, "0123456789abcdef": true, "!~": true, strings.Repeat("z", 200): true,
		"": false, " ": false, "a b": false, "a\tb": false, "a\nb": false, "\x7f": false, "\u00e9": false,
		strings.Repeat("z", 201): false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %t, want %t", id, got, want)
		}
	}
}

func TestNewRequestIDIsUnique(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 10000 {
		id := newRequestID()
		if !generatedID.MatchString(id) || !validRequestID(id) {
			t.Fatalf("newRequestID() = %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("newRequestID() repeated %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = newRequestID()
	}
}

// TestRequestIDWhenNothingIsWritten covers a handler behind Observe that
// writes nothing: net/http's implicit 200 carries the ID too.
func TestRequestIDWhenNothingIsWritten(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	silent := h.Observe(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	rec := httptest.NewRecorder()
	silent.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.test/", nil))
	if !generatedID.MatchString(rec.Header().Get(HeaderRequestID)) {
		t.Errorf("X-Request-ID = %q, want a generated ID", rec.Header().Get(HeaderRequestID))
	}
}
