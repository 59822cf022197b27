//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// The fault scenarios: each puts Postern under a steady load (load_test.go)
// while something goes wrong or changes around it, asserts what clients
// see, and reports one line
//
//	fault <name>: sent=N ok=N failed=N p50=... p99=...
//
// that run.sh collects into a table. Every scenario is bounded in requests
// and time, and sends traffic only to the namespace's own addresses
// (192.0.2.100-149 here).

const (
	// swaps is how many API updates the table-swap scenarios make, one
	// every swapInterval.
	swaps        = 1000
	swapInterval = 10 * time.Millisecond
)

// noRetries turns off Postern's retry of a request that could not reach
// an endpoint, for the scenarios whose point is that nothing fails in the
// first place: a retry would hide a failed attempt from the load.
const noRetries = `postern.dev/retries: "0"`

// annotated adds annotations ("key: value" items) to the metadata of the
// object ingress() wrote.
func annotated(doc string, annotations ...string) string {
	return strings.Replace(doc, "}\nspec:\n", ", annotations: {"+strings.Join(annotations, ", ")+"}}\nspec:\n", 1)
}

// TestFaultTableSwaps: 1,000 changes to an Ingress on the same host as the
// load, 10 ms apart, while requests flow; no request fails, even with
// retries off, and the last change is served.
func TestFaultTableSwaps(t *testing.T) {
	ns := namespace(t, "fault-swaps")
	startEcho(t, "swaps-1", "192.0.2.101:9000")
	startEcho(t, "swaps-2", "192.0.2.102:9000")
	startEcho(t, "swaps-churn", "192.0.2.103:9000")
	host := "swaps.example.com"
	apply(t, service(ns, "web", "192.0.2.101", "192.0.2.102")+service(ns, "churn", "192.0.2.103")+
		annotated(ingress(ns, "app", ns, host, "/=web"), noRetries)+ingress(ns, "churn", ns, host, "/churn-0=churn"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	p.expect(t, host, "/churn-0", 200, "swaps-churn")
	buildsBefore := metricSum(t, p, "postern_controller_table_builds_total")

	l := startLoad(t, p, loadOptions{host: host, backends: []string{"swaps-1", "swaps-2"}})
	last, took := churn(t, clientset(t), ns, "churn", swaps, swapInterval)
	r := l.Stop()

	// The last change is served; the one before it is gone (it falls
	// through to "/").
	p.expect(t, host, last, 200, "swaps-churn")
	p.expectFrom(t, host, fmt.Sprintf("/churn-%d", swaps-1), "swaps-1", "swaps-2")
	// The controller batches changes closer than its hold-off (20 ms):
	// fewer builds than updates.
	builds := metricSum(t, p, "postern_controller_table_builds_total") - buildsBefore
	report(t, "table swaps", r, fmt.Sprintf("%d Ingress updates in %s, %.0f table builds; retries off", swaps, took.Round(time.Millisecond), builds))
	if r.sent < 500 || r.failed != 0 {
		t.Errorf("%d of %d requests failed across %d table swaps (want 0 of at least 500):%s", r.failed, r.sent, swaps, r.failuresText(10))
	}
}

// TestFaultRollingUpdate: a busy Service's three endpoints are replaced one
// by one by three new ones, the way a Deployment rolls out: the new
// backend starts and becomes ready, the old one turns terminating, leaves
// the EndpointSlice, and is stopped a moment after. No request fails, even
// with retries off.
func TestFaultRollingUpdate(t *testing.T) {
	ns := namespace(t, "fault-roll")
	host := "roll.example.com"
	var oldProcs []*proc
	var names []string
	for i := range 3 {
		name := fmt.Sprintf("roll-old-%d", i+1)
		oldProcs = append(oldProcs, startEcho(t, name, fmt.Sprintf("192.0.2.%d:9000", 111+i)))
		names = append(names, name, fmt.Sprintf("roll-new-%d", i+1))
	}
	apply(t, service(ns, "web", "192.0.2.111", "192.0.2.112", "192.0.2.113")+annotated(ingress(ns, "app", ns, host, "/=web"), noRetries))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	p.expectFrom(t, host, "/", "roll-old-1", "roll-old-2", "roll-old-3")
	cs := clientset(t)

	eps := []endpoint{{ip: "192.0.2.111", ready: true}, {ip: "192.0.2.112", ready: true}, {ip: "192.0.2.113", ready: true}}
	l := startLoad(t, p, loadOptions{host: host, backends: names})
	time.Sleep(500 * time.Millisecond)
	for i := range 3 {
		oldIP, newIP := fmt.Sprintf("192.0.2.%d", 111+i), fmt.Sprintf("192.0.2.%d", 114+i)
		startEcho(t, fmt.Sprintf("roll-new-%d", i+1), newIP+":9000")
		eps = append(eps, endpoint{ip: newIP, ready: true})
		setEndpoints(t, cs, ns, "web", eps)
		waitEndpoints(t, p, host, eps)

		eps[i] = endpoint{ip: oldIP, terminating: true}
		setEndpoints(t, cs, ns, "web", eps)
		waitEndpoints(t, p, host, eps)

		eps[i] = endpoint{} // gone from the slice; the others keep their indexes
		setEndpoints(t, cs, ns, "web", eps)
		waitEndpoints(t, p, host, eps)
		// What kubelet's SIGTERM would do after the endpoint left: the
		// old backend drains and exits.
		time.Sleep(500 * time.Millisecond)
		oldProcs[i].Stop()
	}
	time.Sleep(time.Second)
	r := l.Stop()
	report(t, "rolling update", r, "3 endpoints replaced one by one; retries off")
	if r.sent < 500 || r.failed != 0 {
		t.Errorf("%d of %d requests failed during the rollout (want 0 of at least 500):%s", r.failed, r.sent, r.failuresText(10))
	}
	for range 6 {
		if code, body := p.get(host, "/"); code != 200 || !strings.HasPrefix(body, "backend: roll-new-") {
			t.Errorf("after the rollout: %d %q, want 200 from a new backend", code, firstLine(body))
		}
	}
}

// TestFaultBackendKilled: one of three backends is SIGKILLed while it
// streams responses and while requests are in flight to it. What clients
// see depends on how far their request got:
//   - a response already streaming from it ends in an error (the
//     connection closes without the final chunk), never in a clean but
//     short body: a truncated response must not pass for a whole one;
//   - a request sent to it but not yet answered gets 502, or a 200 from
//     another endpoint if it is retried;
//   - a request started after the kill never fails: it goes to the two
//     survivors (the dead endpoint refuses connections, which is retried
//     on another endpoint, and passive health ejects it), even though the
//     EndpointSlice still lists it, as it would until the kubelet notices.
func TestFaultBackendKilled(t *testing.T) {
	ns := namespace(t, "fault-kill")
	host := "kill.example.com"
	names := []string{"kill-1", "kill-2", "kill-3"}
	procs := map[string]*proc{}
	for i, n := range names {
		procs[n] = startEcho(t, n, fmt.Sprintf("192.0.2.%d:9000", 121+i))
	}
	apply(t, service(ns, "web", "192.0.2.121", "192.0.2.122", "192.0.2.123")+ingress(ns, "app", ns, host, "/=web"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	p.expectFrom(t, host, "/", names...)

	retries := metricSum(t, p, "postern_proxy_retries_total")
	l := startLoad(t, p, loadOptions{host: host, backends: names})
	const events = 20
	streams := make([]*sseStream, 6)
	for i := range streams {
		streams[i] = startStream(t, p, host, fmt.Sprintf("/stream?count=%d&interval=150ms", events))
	}
	for _, s := range streams {
		s.waitFirst(t)
	}
	victim := streams[0].backend
	time.Sleep(300 * time.Millisecond) // the streams are mid-response
	kill := time.Now()
	procs[victim].Kill()
	killed := time.Now() // the victim's sockets are closed from here on
	for _, s := range streams {
		s.wait(t)
	}
	time.Sleep(2 * time.Second) // load on the survivors only
	r := l.Stop()

	retries = metricSum(t, p, "postern_proxy_retries_total") - retries
	cut := 0
	for i, s := range streams {
		if s.backend == victim {
			cut++
		}
		switch {
		case s.backend == victim && (s.status != 200 || s.err == nil || s.events >= events):
			t.Errorf("stream %d from the killed backend: status %d, %d of %d events, error %v; want 200 cut short by an error",
				i, s.status, s.events, events, s.err)
		case s.backend != victim && (s.status != 200 || s.err != nil || s.events != events):
			t.Errorf("stream %d from surviving %s: status %d, %d of %d events, error %v; want all of it",
				i, s.backend, s.status, s.events, events, s.err)
		}
	}
	inFlight := 0
	for _, o := range l.outcomesFrom(time.Time{}, killed) {
		if o.start.Add(o.took).After(kill) {
			inFlight++
		}
	}
	var failedInFlight, after int
	for _, f := range r.failures {
		if f.start.Before(killed) {
			failedInFlight++
			if f.status != 0 && f.status != http.StatusBadGateway && !f.cut {
				t.Errorf("a request in flight at the kill got %s; want 502, an aborted response or a retry", f.err)
			}
			continue
		}
		after++
	}
	report(t, "backend killed", r, fmt.Sprintf("%d of 6 streams cut short; %d requests in flight at the kill, %d of them failed; %d failed after it; %.0f retries",
		cut, inFlight, failedInFlight, after, retries))
	if after != 0 {
		t.Errorf("%d requests started after the kill failed; want 0 (the survivors take them):%s", after, r.failuresText(10))
	}
	if n := len(l.outcomesFrom(killed, time.Now())); n < 100 {
		t.Errorf("only %d requests after the kill; the check needs more", n)
	}
}

// TestFaultBackendHang: a backend that accepts connections and never
// answers, behind an Ingress annotated postern.dev/timeout-read: "2s":
// clients get 504 after about two seconds, not after the global
// --upstream-response-timeout (60 s).
func TestFaultBackendHang(t *testing.T) {
	ns := namespace(t, "fault-hang")
	host := "hang.example.com"
	accepted := hangingBackend(t, "192.0.2.125:9000")
	apply(t, service(ns, "web", "192.0.2.125")+annotated(ingress(ns, "app", ns, host, "/=web"), `postern.dev/timeout-read: "2s"`))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	eventually(t, 20*time.Second, func() error {
		if eps := routedEndpoints(t, p, host); len(eps) != 1 {
			return fmt.Errorf("endpoints of %s: %v", host, eps)
		}
		return nil
	})

	const requests = 3
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		r    = loadResult{sent: requests}
		took []time.Duration
	)
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 15 * time.Second}
	for range requests {
		wg.Go(func() {
			start := time.Now()
			code, err := getStatus(c, p.HTTPAddr, host, "/")
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			took = append(took, d)
			// 504 well before the 60 s default: the annotation's timeout
			// applied (2 s; the rest is slack for a loaded machine).
			if err == nil && code == http.StatusGatewayTimeout && d >= 1900*time.Millisecond && d < 8*time.Second {
				r.ok++
				return
			}
			r.failed++
			r.failures = append(r.failures, outcome{start: start, took: d, status: code, err: fmt.Sprintf("status %d after %s, error %v", code, d.Round(time.Millisecond), err)})
		})
	}
	wg.Wait()
	r.p50, r.p99 = quantile(took, 0.5), quantile(took, 0.99)
	report(t, "backend hangs", r, `ok: 504 within postern.dev/timeout-read "2s"`)
	if r.failed != 0 {
		t.Errorf("%d of %d requests to a hanging backend with timeout-read 2s were not 504 after 2 s:%s", r.failed, requests, r.failuresText(requests))
	}
	if accepted.Load() == 0 {
		t.Errorf("the hanging backend never got a connection: the 504s did not come from it")
	}
}

// TestFaultWebSocketsAcrossSwaps: 100 WebSocket connections stay open
// across 1,000 changes to an Ingress of their host, and every one of them
// still echoes afterwards.
func TestFaultWebSocketsAcrossSwaps(t *testing.T) {
	ns := namespace(t, "fault-ws")
	host := "ws.example.com"
	startEcho(t, "ws-1", "192.0.2.131:9000")
	startEcho(t, "ws-2", "192.0.2.132:9000")
	startEcho(t, "ws-churn", "192.0.2.133:9000")
	apply(t, service(ns, "web", "192.0.2.131", "192.0.2.132")+service(ns, "churn", "192.0.2.133")+
		ingress(ns, "app", ns, host, "/=web")+ingress(ns, "churn", ns, host, "/churn-0=churn"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	p.expect(t, host, "/churn-0", 200, "ws-churn")

	const conns = 100
	ws := make([]*websocket.Conn, conns)
	forEach(t, conns, func(i int) error {
		c, err := dialWebSocket(p.HTTPAddr, host, "/ws")
		if err != nil {
			return err
		}
		t.Cleanup(func() { _ = c.Close() })
		ws[i] = c
		_, err = echoOnce(c, fmt.Sprintf("hello %d", i))
		return err
	})

	_, took := churn(t, clientset(t), ns, "churn", swaps, swapInterval)

	r := loadResult{sent: conns}
	var (
		mu  sync.Mutex
		rtt []time.Duration
	)
	var wg sync.WaitGroup
	for i, c := range ws {
		wg.Go(func() {
			d, err := echoOnce(c, fmt.Sprintf("after the swaps %d", i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.failed++
				r.failures = append(r.failures, outcome{err: fmt.Sprintf("connection %d: %v", i, err)})
				return
			}
			r.ok++
			rtt = append(rtt, d)
		})
	}
	wg.Wait()
	r.p50, r.p99 = quantile(rtt, 0.5), quantile(rtt, 0.99)
	report(t, "websockets across swaps", r, fmt.Sprintf("%d connections, %d Ingress updates in %s; latency of one echo after them", conns, swaps, took.Round(time.Millisecond)))
	if r.failed != 0 {
		t.Errorf("%d of %d WebSocket connections did not echo after %d table swaps:%s", r.failed, conns, swaps, r.failuresText(10))
	}
	p.expect(t, host, fmt.Sprintf("/churn-%d", swaps), 200, "ws-churn")
}

// TestFaultGracefulDrain: SIGTERM while requests flow, with slow ones in
// flight. Every request Postern accepted completes: the slow ones whole,
// the load's without a failure. Connections refused after the SIGTERM are
// expected and not counted as failures: the listener is closed, and a real
// Service stops sending to a terminating pod. (A request sent on a
// keep-alive connection just as Postern closed it as idle was never read;
// Go's client sends it again on a new connection, which is refused: it
// counts as refused too.) A request Postern read must never fail. The
// process exits 0 within --shutdown-grace, and /readyz answers 503 while
// it drains.
func TestFaultGracefulDrain(t *testing.T) {
	ns := namespace(t, "fault-drain")
	host := "drain.example.com"
	names := []string{"drain-1", "drain-2"}
	startEcho(t, names[0], "192.0.2.141:9000")
	startEcho(t, names[1], "192.0.2.142:9000")
	apply(t, service(ns, "web", "192.0.2.141", "192.0.2.142")+ingress(ns, "app", ns, host, "/=web"))
	const grace = 10 * time.Second
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns, "--shutdown-grace", grace.String())
	p.expectFrom(t, host, "/", names...)

	l := startLoad(t, p, loadOptions{host: host, backends: names})
	slows, wg := startSlowRequests(p, host)
	time.Sleep(500 * time.Millisecond) // the slow requests reached their backends

	term := time.Now()
	l.expectRefusedFrom(term)
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notReadyAfter := waitNotReady(p, term)
	select {
	case <-p.Done():
	case <-time.After(grace + 5*time.Second):
		t.Fatalf("postern still running %s after SIGTERM (--shutdown-grace %s)", grace+5*time.Second, grace)
	}
	exitAfter := time.Since(term)
	wg.Wait()
	r := l.Stop()

	closedAfter := time.Duration(-1)
	for _, o := range l.outcomesFrom(term, time.Now()) {
		if o.refused {
			closedAfter = o.start.Sub(term)
			break
		}
	}
	report(t, "graceful drain", r, fmt.Sprintf("refused after SIGTERM not counted; /readyz 503 %s and first refusal %s after SIGTERM; exit %d after %s",
		notReadyAfter.Round(time.Millisecond), closedAfter.Round(time.Millisecond), p.Cmd.ProcessState.ExitCode(), exitAfter.Round(time.Millisecond)))

	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, p.Tail(20))
	}
	if exitAfter > grace+2*time.Second {
		t.Errorf("exited %s after SIGTERM, want within --shutdown-grace %s", exitAfter, grace)
	}
	if notReadyAfter == 0 {
		t.Errorf("/readyz never answered 503 during the drain")
	}
	checkSlowRequests(t, slows)
	if r.sent < 100 || r.failed != 0 {
		t.Errorf("%d of %d accepted requests failed during the drain (want 0 of at least 100):%s", r.failed, r.sent, r.failuresText(10))
	}
}

// slowRequest is one of the requests TestFaultGracefulDrain keeps in flight
// across the SIGTERM, and what it got.
type slowRequest struct {
	path   string
	code   int
	body   string
	err    error
	events int
}

// startSlowRequests sends, through p, the slow requests: two whose answer
// starts after 3 s, one that streams for 3 s. Wait on the WaitGroup before
// reading what they got.
func startSlowRequests(p *Postern, host string) ([]*slowRequest, *sync.WaitGroup) {
	slows := []*slowRequest{{path: "/delay?d=3s"}, {path: "/delay?d=3s"}, {path: "/stream?count=11&interval=300ms"}}
	var wg sync.WaitGroup
	for _, s := range slows {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}
			s.code, s.body, s.err = getBody(c, p.HTTPAddr, host, s.path)
			s.events = strings.Count(s.body, "data: ")
		})
	}
	return slows, &wg
}

// waitNotReady polls /readyz for 2 s after term and returns how long after
// term it first answered 503, or 0 if it never did. /readyz answers 503
// while the listeners drain (the slow requests keep the process up for
// about 2.5 s more).
func waitNotReady(p *Postern, term time.Time) time.Duration {
	var notReadyAfter time.Duration
	for time.Since(term) < 2*time.Second && notReadyAfter == 0 {
		if code, _ := httpGet(p.MetricsAddr, "", "/readyz"); code == http.StatusServiceUnavailable {
			notReadyAfter = time.Since(term)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return notReadyAfter
}

// checkSlowRequests checks that every slow request in flight at the SIGTERM
// completed whole.
func checkSlowRequests(t *testing.T, slows []*slowRequest) {
	t.Helper()
	for _, s := range slows {
		whole := strings.HasPrefix(s.body, "backend: drain-") // /delay
		if strings.HasPrefix(s.path, "/stream") {
			whole = s.events == 11
		}
		if s.err != nil || s.code != 200 || !whole {
			t.Errorf("slow request %s in flight at SIGTERM: status %d, %d events, error %v, body %q; want it whole",
				s.path, s.code, s.events, s.err, firstLine(s.body))
		}
	}
}

// expectFrom polls until GET host/path through p answers 200 from one of
// the backends named.
func (p *Postern) expectFrom(t *testing.T, host, path string, names ...string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if code, body := p.get(host, path); code != 200 || !fromBackend(body, names) {
			return fmt.Errorf("GET %s%s = %d %q, want 200 from one of %v", host, path, code, firstLine(body), names)
		}
		return nil
	})
}
