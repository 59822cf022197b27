package proxy

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// ingress-nginx's e2e limitconnections.go on every engine: with
// limit-connections 8, 20 requests of one client in progress at once get
// exactly 8 answers from the backend and 12 refusals; the slots come
// back when the requests end.
func TestLimitConnectionsOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		release := make(chan struct{})
		var inFlight sync.WaitGroup
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/sleep" {
				inFlight.Done()
				select {
				case <-release:
				case <-time.After(testTimeout):
				}
			}
			w.WriteHeader(http.StatusOK)
		})
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("limit.test", &route.Route{
			Match:    route.Match{PathType: route.PathPrefix, Path: "/"},
			Policy:   &route.Policy{RateLimit: &route.RateLimit{Zone: "ns/limited", Connections: 8}},
			Backends: route.Single(backendOf("b", "", b)),
		})}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)

		inFlight.Add(8)
		statuses := make(chan int, 20)
		var done sync.WaitGroup
		for range 20 {
			done.Add(1)
			go func() {
				defer done.Done()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/sleep", nil)
				if err != nil {
					statuses <- -1
					return
				}
				req.Host = "limit.test"
				resp, err := c.Do(req)
				if err != nil {
					statuses <- -1
					return
				}
				resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		// The 12 refusals come while the 8 are held.
		count := map[int]int{}
		for range 12 {
			select {
			case st := <-statuses:
				count[st]++
			case <-time.After(testTimeout):
				t.Fatalf("refusals so far %v, want 12 while 8 are held", count)
			}
		}
		inFlight.Wait()
		close(release)
		done.Wait()
		close(statuses)
		for st := range statuses {
			count[st]++
		}
		if count[http.StatusOK] != 8 || count[http.StatusServiceUnavailable] != 12 || len(count) != 2 {
			t.Errorf("statuses %v, want 8 × 200 and 12 × 503", count)
		}
		if got := b.hits.Load(); got != 8 {
			t.Errorf("backend hits %d, want 8", got)
		}
		// Every slot came back.
		for i := range 10 {
			resp, _ := get(t, c, addr, "limit.test", "/after")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d after the burst: %d", i, resp.StatusCode)
			}
		}
	})
}
