package proxy

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// proxy-next-upstream-timeout on every engine: an attempt that fails
// after the retry timeout has passed is not sent again (502); without the
// timeout it is, to the other endpoint (200).
func TestRetryTimeoutOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		slowFail := rawEndpoint(t, func(c net.Conn) {
			time.Sleep(15 * time.Millisecond) // under h1WatchAfter: the fast path may still retry
			// Closed with the request unread: a reset before any
			// response byte, which is retried.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		})
		good := newBackend(t, "good", nil)
		be := func(name string) *route.Backend {
			b := backendOf(name, "", good)
			b.Endpoints = []route.Endpoint{{Address: slowFail}, {Address: good.addr()}}
			return b
		}
		withTimeout := prefix("/timeout", be("timeout"))
		withTimeout.Policy = &route.Policy{RetryTimeout: route.Duration(3 * time.Millisecond)}
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("retry.test", withTimeout, prefix("/", be("plain")))}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		// Round robin: of two requests one goes to the failing endpoint
		// first.
		var plain, timed []int
		for range 2 {
			r, _ := get(t, c, addr, "retry.test", "/")
			plain = append(plain, r.StatusCode)
			r, _ = get(t, c, addr, "retry.test", "/timeout")
			timed = append(timed, r.StatusCode)
		}
		for _, code := range plain {
			if code != http.StatusOK {
				t.Errorf("without a retry timeout: %v, want every request retried to 200", plain)
				break
			}
		}
		if timed[0] != http.StatusBadGateway && timed[1] != http.StatusBadGateway {
			t.Errorf("with a 3ms retry timeout: %v, want the attempt that failed after 15ms answered 502", timed)
		}
	})
}
