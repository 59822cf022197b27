package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/route"
)

// load-balance: ewma on every engine: the engine records each endpoint's
// latency, and a slow endpoint soon gets little of the traffic.
func TestEWMAOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(40 * time.Millisecond)
			w.WriteHeader(http.StatusOK)
		})
		fast := newBackend(t, "fast", nil)
		be := backendOf("b", "", slow, fast)
		be.Balancer = balancer.PolicyEWMA
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("ewma.test", &route.Route{
			Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(be),
		})}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		for range 60 {
			if resp, _ := get(t, c, addr, "ewma.test", "/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		if n := slow.hits.Load(); n == 0 || n > 10 {
			t.Errorf("the 40 ms endpoint got %d of 60 requests, want a few (it is tried, then avoided)", n)
		}
	})
}
