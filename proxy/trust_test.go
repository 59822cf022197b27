package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// trustCase is a trust configuration of TestTrustedForwardedHeaders and
// what the backend and the access log must see under it.
type trustCase struct {
	name    string
	trusted []string
	want    map[string]string
	client  string // in the access log
}

// trustCases are the cases of TestTrustedForwardedHeaders.
func trustCases() []trustCase {
	return []trustCase{
		{
			name: "no trust configured",
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Host": "app.example.com",
				"X-Forwarded-Proto": "http", "Forwarded": "",
			},
			client: "127.0.0.1",
		},
		{
			name:    "untrusted peer",
			trusted: []string{"10.0.0.0/8"},
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Host": "app.example.com",
				"X-Forwarded-Proto": "http", "Forwarded": "",
			},
			client: "127.0.0.1",
		},
		{
			name:    "trusted peer",
			trusted: []string{"127.0.0.1", "10.0.0.0/8"},
			want: map[string]string{
				"X-Forwarded-For":   "198.51.100.1, 203.0.113.7, 10.1.1.1, 127.0.0.1",
				"X-Real-Ip":         "203.0.113.7",
				"X-Forwarded-Host":  "public.example",
				"X-Forwarded-Proto": "https",
				"Forwarded":         "for=203.0.113.7;proto=https",
			},
			client: "203.0.113.7",
		},
	}
}

// forwardedClaimsRequest is a request to app.example.com through the proxy
// at addr that claims, in every forwarding header, to have come a long way.
func forwardedClaimsRequest(t *testing.T, addr string) *http.Request {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
	req.Host = "app.example.com"
	req.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
	req.Header.Add("X-Forwarded-For", "10.1.1.1")
	req.Header.Set("X-Real-IP", "192.0.2.66")
	req.Header.Set("X-Forwarded-Host", "public.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Forwarded", "for=203.0.113.7;proto=https")
	return req
}

// TestTrustedForwardedHeaders sends the same claims from a trusted and an
// untrusted peer (the test client is 127.0.0.1) and checks what the
// backend and the access log see.
func TestTrustedForwardedHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		tests := trustCases()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := newBackend(t, "b", nil)
				var out bytes.Buffer // read after Close, which waits for the writer
				al := observe.NewAccessLog(observe.AccessLogOptions{Output: &out, Sample: 1})
				h := New(Options{AccessLog: al})
				t.Cleanup(h.CloseIdleConnections)
				h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", b)))}, nil))
				addr, s := startServer(t, e, h, ServerOptions{TrustedProxies: mustTrusted(t, tt.trusted)})

				req := forwardedClaimsRequest(t, addr)
				if resp, body := do(t, newClient(t), req); resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d %q", resp.StatusCode, body)
				}
				if e.fast() && served(s) != 1 {
					// The same expectations hold for both paths: with the
					// fast path on, it must be the one that served.
					t.Errorf("the fast path served %d requests, want 1", served(s))
				}
				r := b.lastRequest()
				for k, v := range tt.want {
					if got := strings.Join(r.Header.Values(k), "|"); got != v {
						t.Errorf("backend saw %s %q, want %q", k, got, v)
					}
				}

				if err := al.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				var line struct{ Client string }
				if err := json.Unmarshal(out.Bytes(), &line); err != nil {
					t.Fatalf("access log %q: %v", out.String(), err)
				}
				if line.Client != tt.client {
					t.Errorf("access log client %q, want %q", line.Client, tt.client)
				}
			})
		}
	})
}

// BenchmarkForwardedHeadersTrusted is BenchmarkForwardedHeaders with the
// peer trusted: the X-Forwarded-For chain is walked and appended to.
func BenchmarkForwardedHeadersTrusted(b *testing.B) {
	benchForwarded(b, mustTrusted(b, []string{"192.0.2.0/24", "10.0.0.0/8"}))
}
