package proxy

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestIDThroughProxy(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			// A backend that sets an ID of its own: the client still sees
			// one, the proxy's.
			w.Header().Set(pipeline.HeaderRequestID, "backend-made")
			_, _ = w.Write([]byte(r.Header.Get(pipeline.HeaderRequestID)))
		})
		addr, _ := startProxy(t, e, route.NewTable([]*route.VirtualHost{
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
					req.Header[pipeline.HeaderRequestID] = tt.sent
				}
				resp, body := do(t, c, req)
				got := resp.Header.Values(pipeline.HeaderRequestID)
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
	})
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
		req.Header.Set(pipeline.HeaderRequestID, "from-client")
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want || rec.Header().Get(pipeline.HeaderRequestID) != "from-client" {
			t.Errorf("%s: %d with X-Request-ID %q, want %d with the client's", tt.host, rec.Code, rec.Header().Get(pipeline.HeaderRequestID), tt.want)
		}
	}
}
