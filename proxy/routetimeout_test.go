package proxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// The route's request and attempt timeouts (an HTTPRoute's
// timeouts.request and backendRequest) on every engine: an endpoint that
// does not answer in time gets 504, one that answers in time 200, and a
// response still being relayed when the time is up is cut, even while
// the endpoint keeps sending (an idle timeout would not cut it).
func TestRouteTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pol  route.Policy
	}{
		{"request", route.Policy{RequestTimeout: route.Duration(300 * time.Millisecond)}},
		{"attempt", route.Policy{AttemptTimeout: route.Duration(300 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, func(t *testing.T, e engine) {
				t.Parallel()
				slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
					delay, _ := time.ParseDuration(r.URL.Query().Get("delay"))
					select {
					case <-time.After(delay):
					case <-r.Context().Done():
						return
					}
					if r.URL.Query().Get("stream") == "" {
						_, _ = io.WriteString(w, "done")
						return
					}
					// A line every 50 ms, for ever: never idle.
					for i := 0; ; i++ {
						if _, err := io.WriteString(w, strconv.Itoa(i)+"\n"); err != nil {
							return
						}
						_ = http.NewResponseController(w).Flush()
						select {
						case <-time.After(50 * time.Millisecond):
						case <-r.Context().Done():
							return
						}
					}
				})
				pol := tc.pol
				pol.IdleTimeout = route.Duration(time.Second)
				addr, _, _ := proxyWith(t, e, resilienceBackend("slow", slow.addr()), &pol, Options{})
				c := newClient(t)

				r, body := get(t, c, addr, "app.test", "/x?delay=1s")
				if r.StatusCode != http.StatusGatewayTimeout {
					t.Errorf("an endpoint answering after 1s: %d %q, want 504", r.StatusCode, body)
				}
				r, body = get(t, c, addr, "app.test", "/x?delay=10ms")
				if r.StatusCode != http.StatusOK || body != "done" {
					t.Errorf("an endpoint answering at once: %d %q, want 200 done", r.StatusCode, body)
				}

				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x?stream=1", nil)
				req.Host = "app.test"
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("stream: status %d, want 200", resp.StatusCode)
				}
				lines := 0
				br := bufio.NewReader(resp.Body)
				for {
					if _, err = br.ReadString('\n'); err != nil {
						break
					}
					lines++
				}
				took := time.Since(start)
				if !errors.Is(err, io.ErrUnexpectedEOF) || lines == 0 {
					t.Errorf("stream: %d lines, then %v; want it cut (unexpected EOF) after some", lines, err)
				}
				if took > 5*time.Second {
					t.Errorf("stream cut after %s, want about 300ms", took)
				}
			})
		})
	}
}
