package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// hangupAddr returns the address of an endpoint that accepts connections,
// reads what comes and closes them without answering: a backend crashing
// on the request.
func hangupAddr(t *testing.T) string {
	t.Helper()
	return rawEndpoint(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 64<<10)) })
}

// fullBacklogAddr returns the address of a listener that never accepts
// and whose accept queue is full: Linux drops the SYNs of further
// connections, so connecting to it hangs until the dialer gives up. (An
// unrouted address would do the same outside the e2e network namespace,
// but nothing guarantees it is unrouted.)
func fullBacklogAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 queues one connection.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	rawConn(t, addr) // fills the queue
	return addr
}

// resilienceBackend is a backend over the given addresses.
func resilienceBackend(name string, addrs ...string) *route.Backend {
	be := &route.Backend{Key: "ns/" + name + ":80", Namespace: "ns", Service: name, Port: "80"}
	for _, a := range addrs {
		be.Endpoints = append(be.Endpoints, route.Endpoint{Address: a})
	}
	return be
}

// proxyFor serves be for every request to app.test through a new Handler
// with metrics, and returns its address, the Handler and the metrics'
// registry.
func proxyFor(t *testing.T, e engine, be *route.Backend, opts Options) (string, *Handler, *prometheus.Registry) {
	t.Helper()
	return proxyWith(t, e, be, nil, opts)
}

// proxyWith is proxyFor with a route policy (nil: none).
func proxyWith(t *testing.T, e engine, be *route.Backend, pol *route.Policy, opts Options) (string, *Handler, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Metrics = observe.NewMetrics(reg)
	rt := prefix("/", be)
	rt.Policy = pol
	addr, h := startProxy(t, e, route.NewTable([]*route.VirtualHost{vhost("app.test", rt)}, nil), opts)
	return addr, h, reg
}

// send makes a request to app.test through the proxy at addr.
func send(t *testing.T, addr, method string, body io.Reader, header http.Header) (reply, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+"/x", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, newClient(t), req)
}

// retryCase is a request that fails on its first endpoint, and whether the
// retry to the second, live one must happen.
type retryCase struct {
	name    string
	first   string // refused, hangup: how the first endpoint fails
	method  string
	body    string
	header  http.Header
	retries int
	want    int  // status
	retried bool // one retry, to the live endpoint
}

// retryCases are the cases of TestRetry.
func retryCases() []retryCase {
	idem := http.Header{"Idempotency-Key": {"8e03978e-40d5-43e8-bc93-6894a57f9324"}}
	return []retryCase{
		{"GET refused", "refused", http.MethodGet, "", nil, 0, http.StatusOK, true},
		{"POST with body refused", "refused", http.MethodPost, "hello", nil, 0, http.StatusOK, true},
		{"POST without body refused", "refused", http.MethodPost, "", nil, 0, http.StatusOK, true},
		{"GET reset", "hangup", http.MethodGet, "", nil, 0, http.StatusOK, true},
		{"DELETE reset", "hangup", http.MethodDelete, "", nil, 0, http.StatusOK, true},
		{"POST with body sent, reset", "hangup", http.MethodPost, "hello", nil, 0, http.StatusBadGateway, false},
		{"PUT with body sent, reset", "hangup", http.MethodPut, "hello", nil, 0, http.StatusBadGateway, false},
		{"POST without body, reset", "hangup", http.MethodPost, "", nil, 0, http.StatusBadGateway, false},
		{"POST with Idempotency-Key, reset", "hangup", http.MethodPost, "", idem, 0, http.StatusOK, true},
		{"retries off", "refused", http.MethodGet, "", nil, -1, http.StatusBadGateway, false},
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		tests := retryCases()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				live := newBackend(t, "live", func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					fmt.Fprintf(w, "live %s %q", r.Method, b)
				})
				first := deadAddr(t)
				if tt.first == "hangup" {
					first = hangupAddr(t)
				}
				// Round robin picks the first endpoint first.
				be := resilienceBackend("app", first, live.addr())
				rt := prefix("/", be)
				rt.Policy = &route.Policy{Retries: tt.retries}
				var out syncBuffer
				al := observe.NewAccessLog(observe.AccessLogOptions{Output: &out, Sample: 1})
				reg := prometheus.NewRegistry()
				h := New(Options{AccessLog: al, Metrics: observe.NewMetrics(reg)})
				h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", rt)}, nil))
				t.Cleanup(h.CloseIdleConnections)
				addr, stop := serveUntilDone(t, e, h)

				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				resp, got := send(t, addr, tt.method, body, tt.header)
				if resp.StatusCode != tt.want {
					t.Fatalf("status %d %q, want %d", resp.StatusCode, got, tt.want)
				}
				wantRetries, wantHits, upstream := 0.0, int64(0), first
				if tt.retried {
					wantRetries, wantHits, upstream = 1, 1, live.addr()
					if want := fmt.Sprintf("live %s %q", tt.method, tt.body); got != want {
						t.Errorf("body %q, want %q (the retry must send the whole request)", got, want)
					}
				}
				if n := scalar(t, reg, "postern_proxy_retries_total"); n != wantRetries {
					t.Errorf("postern_proxy_retries_total = %v, want %v", n, wantRetries)
				}
				if n := live.hits.Load(); n != wantHits {
					t.Errorf("the live endpoint got %d requests, want %d", n, wantHits)
				}
				if n := h.cluster.InFlight().Count(first) + h.cluster.InFlight().Count(live.addr()); n != 0 {
					t.Errorf("%d requests still counted in flight", n)
				}
				stop()
				closeLog(t, al)
				if lines := out.lines(t); len(lines) != 1 || lines[0]["upstream"] != upstream {
					t.Errorf("access log %v, want one line with upstream %s", lines, upstream)
				}
			})
		}
	})
}

// TestRetryBudget checks that retries stop at the backend's count and at
// the number of endpoints.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		tests := []struct {
			retries, endpoints int
			want               float64
		}{
			{0, 3, 1}, // the default: one
			{2, 4, 2},
			{5, 3, 2}, // never more attempts than endpoints
			{-1, 3, 0},
			{9, 10, route.MaxRetries},
			{1, 1, 0},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d retries over %d", tt.retries, tt.endpoints), func(t *testing.T) {
				t.Parallel()
				var addrs []string
				for range tt.endpoints {
					addrs = append(addrs, deadAddr(t))
				}
				be := resilienceBackend("dead", addrs...)
				addr, _, reg := proxyWith(t, e, be, &route.Policy{Retries: tt.retries}, Options{})
				if resp, body := send(t, addr, http.MethodGet, nil, nil); resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d %q, want 502", resp.StatusCode, body)
				}
				if n := scalar(t, reg, "postern_proxy_retries_total"); n != tt.want {
					t.Errorf("retries = %v, want %v", n, tt.want)
				}
				if n := gather(t, reg, "postern_proxy_upstream_errors_total")[`reason="dial"`].value; n != tt.want+1 {
					t.Errorf("upstream dial errors = %v, want one per attempt, %v", n, tt.want+1)
				}
			})
		}
	})
}

// fakeClock is a settable time for balancer.Health.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPassiveHealthEjectsAndReadmits(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		clk := &fakeClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
		health := &balancer.Health{Ejection: time.Minute, Now: clk.Now}
		live := newBackend(t, "live", nil)
		dead := deadAddr(t)
		be := resilienceBackend("app", dead, live.addr())
		addr, _, _ := proxyWith(t, e, be, &route.Policy{Retries: -1}, Options{Health: health})

		statuses := func(n int) map[int]int {
			got := make(map[int]int)
			for range n {
				resp, _ := send(t, addr, http.MethodGet, nil, nil)
				got[resp.StatusCode]++
			}
			return got
		}
		// Round robin alternates: three failures on the dead endpoint eject
		// it.
		if got := statuses(6); got[http.StatusBadGateway] != 3 || got[http.StatusOK] != 3 {
			t.Fatalf("first 6 requests: %v, want 3 502s and 3 200s", got)
		}
		if !health.Ejected(dead) {
			t.Fatal("the dead endpoint is not ejected after 3 consecutive failures")
		}
		if got := statuses(10); got[http.StatusOK] != 10 {
			t.Errorf("while ejected: %v, want 10 200s", got)
		}
		// The period ends: the endpoint gets traffic again by itself.
		clk.Advance(time.Minute)
		if got := statuses(2); got[http.StatusBadGateway] != 1 {
			t.Errorf("after the ejection: %v, want one request on the dead endpoint again", got)
		}
	})
}

func TestPassiveHealthFailsOpen(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		var broken atomic.Bool
		broken.Store(true)
		flaky := func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() {
				c, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					c.Close() // a reset before any response byte
				}
				return
			}
			fmt.Fprint(w, "ok")
		}
		a, b := newBackend(t, "a", flaky), newBackend(t, "b", flaky)
		be := resilienceBackend("app", a.addr(), b.addr())
		addr, h, _ := proxyWith(t, e, be, &route.Policy{Retries: -1}, Options{})
		for range 6 {
			if resp, body := send(t, addr, http.MethodGet, nil, nil); resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d %q, want 502", resp.StatusCode, body)
			}
		}
		if !h.cluster.Health().Ejected(a.addr()) || !h.cluster.Health().Ejected(b.addr()) {
			t.Fatal("both endpoints should be ejected")
		}
		// Every endpoint is ejected, and traffic still goes to them: once
		// they recover, a request succeeds before any ejection ends.
		broken.Store(false)
		hitsA, hitsB := a.hits.Load(), b.hits.Load()
		if resp, body := send(t, addr, http.MethodGet, nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("with every endpoint ejected: status %d %q, want 200 (fail open)", resp.StatusCode, body)
		}
		answered, other := a, b
		if b.hits.Load() > hitsB {
			answered, other = b, a
			hitsA, hitsB = hitsB, hitsA
		}
		if answered.hits.Load()-hitsA != 1 {
			t.Fatal("no ejected endpoint got the request")
		}
		// The success readmits the endpoint that answered; the other one
		// stays ejected, and is skipped now that there is a healthy one.
		if h.cluster.Health().Ejected(answered.addr()) || !h.cluster.Health().Ejected(other.addr()) {
			t.Fatalf("Ejected(answered) = %v, Ejected(other) = %v; want false, true", h.cluster.Health().Ejected(answered.addr()), h.cluster.Health().Ejected(other.addr()))
		}
		for range 4 {
			if resp, body := send(t, addr, http.MethodGet, nil, nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q, want 200", resp.StatusCode, body)
			}
		}
		if n := other.hits.Load() - hitsB; n != 0 {
			t.Errorf("the endpoint still ejected got %d requests, want 0", n)
		}
	})
}

func TestTimeoutConnect(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		be := resilienceBackend("blackhole", fullBacklogAddr(t))
		be.ConnectTimeout = route.Duration(100 * time.Millisecond)
		// The Handler's own default would outlast the client: only the
		// backend's timeout can answer in time.
		addr, _, reg := proxyFor(t, e, be, Options{DialTimeout: 3 * testTimeout})
		resp, body := send(t, addr, http.MethodGet, nil, nil)
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d %q, want 504", resp.StatusCode, body)
		}
		if n := gather(t, reg, "postern_proxy_upstream_errors_total")[`reason="dial"`].value; n != 1 {
			t.Errorf("upstream dial errors = %v, want 1", n)
		}
	})
}

func TestTimeoutRead(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		be := resilienceBackend("slow", slow.addr())
		addr, _, _ := proxyWith(t, e, be, &route.Policy{ReadTimeout: route.Duration(100 * time.Millisecond)}, Options{ResponseHeaderTimeout: 3 * testTimeout})
		resp, body := send(t, addr, http.MethodGet, nil, nil)
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d %q, want 504", resp.StatusCode, body)
		}
		checkErrorBody(t, resp.Header, body, http.StatusGatewayTimeout, slow.addr())
	})
}

func TestTimeoutIdleCutsStalledStream(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		backendGone := make(chan struct{})
		stall := newBackend(t, "stall", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first\n")
			_ = http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				close(backendGone) // the proxy hung up on the backend
			}
		})
		be := resilienceBackend("stall", stall.addr())
		addr, _, reg := proxyWith(t, e, be, &route.Policy{IdleTimeout: route.Duration(100 * time.Millisecond)}, Options{})

		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
		req.Host = "app.test"
		resp, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
		rest, err := io.ReadAll(br)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("reading the stalled stream: %q, %v; want it cut (unexpected EOF)", rest, err)
		}
		select {
		case <-backendGone:
		case <-time.After(testTimeout):
			t.Fatal("the backend's request was not ended")
		}
		if n := gather(t, reg, "postern_proxy_upstream_errors_total")[`reason="timeout"`].value; n != 1 {
			t.Errorf("upstream timeouts = %v, want 1", n)
		}
	})
}

func TestMaxBodySize(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		var complete atomic.Int64
		sink := newBackend(t, "sink", func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return // an aborted request
			}
			complete.Add(1)
			fmt.Fprintf(w, "%d bytes", len(b))
		})
		be := resilienceBackend("sink", sink.addr())
		addr, _, _ := proxyWith(t, e, be, &route.Policy{MaxBodySize: 10}, Options{})

		// chunked hides the length: the body is sent with
		// Transfer-Encoding: chunked, in the pieces given.
		chunked := func(parts ...string) io.Reader {
			var rs []io.Reader
			for _, p := range parts {
				rs = append(rs, strings.NewReader(p))
			}
			return io.MultiReader(rs...)
		}
		tests := []struct {
			name     string
			body     io.Reader
			want     int
			complete int64 // requests the backend got whole so far
		}{
			{"Content-Length at the limit", strings.NewReader("0123456789"), http.StatusOK, 1},
			{"Content-Length over the limit", strings.NewReader("0123456789a"), http.StatusRequestEntityTooLarge, 1},
			{"chunked at the limit", chunked("01234", "56789"), http.StatusOK, 2},
			{"chunked over the limit", chunked("01234", "56789", "a"), http.StatusRequestEntityTooLarge, 2},
			// Far over, but short enough for net/http to read the rest of
			// it before closing: a client still writing a longer one when
			// the connection closes may see a reset instead of the 413.
			{"chunked far over the limit", chunked(strings.Repeat("x", 64<<10)), http.StatusRequestEntityTooLarge, 2},
		}
		for _, tt := range tests { // in order: complete counts up
			hits := sink.hits.Load()
			resp, body := send(t, addr, http.MethodPost, tt.body, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s: status %d %q, want %d", tt.name, resp.StatusCode, body, tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge {
				checkErrorBody(t, resp.Header, body, tt.want)
			}
			if n := complete.Load(); n != tt.complete {
				t.Errorf("%s: the backend got %d whole requests, want %d", tt.name, n, tt.complete)
			}
			if tt.name == "Content-Length over the limit" && sink.hits.Load() != hits {
				t.Errorf("%s: the backend was contacted", tt.name)
			}
		}

		// The rest of a refused body is not read: the connection ends. (For
		// a short body net/http would first wait for the rest, to keep the
		// connection.)
		resps, c, br := exchange(t, addr, crlf("POST /x HTTP/1.1\nHost: app.test\nContent-Length: 100000000\n\n0123456789a"), 1)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("raw request over the limit: %v, want one 413", resps)
		}
		if !closedByServer(c, br) {
			t.Error("the connection stays open after a 413")
		}
	})
}

// countedServer starts a backend answering its name, whose open
// connections are counted. A request for .../hold signals holding and waits
// for release.
func countedServer(t *testing.T, name string, holding chan<- struct{}, release <-chan struct{}) (string, *atomic.Int64) {
	t.Helper()
	open := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hold") {
			holding <- struct{}{}
			<-release
		}
		fmt.Fprint(w, name)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Config.ErrorLog = newStdLog(zap.NewNop())
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), open
}

func TestDrainClosesConnectionsToRemovedEndpoints(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		holding, release := make(chan struct{}), make(chan struct{})
		var releaseOnce sync.Once
		goneAddr, goneOpen := countedServer(t, "gone", holding, release)
		keptAddr, keptOpen := countedServer(t, "kept", holding, release)
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
		gone, kept := resilienceBackend("gone", goneAddr), resilienceBackend("kept", keptAddr)
		table := func(bs ...*route.Backend) *route.Table {
			var rs []*route.Route
			for _, b := range bs {
				rs = append(rs, prefix("/"+b.Service, b))
			}
			return route.NewTable([]*route.VirtualHost{vhost("app.test", rs...)}, nil)
		}
		addr, h := startProxy(t, e, table(gone, kept), Options{})
		c := newClient(t)
		for _, path := range []string{"/gone/a", "/kept/a"} {
			if resp, body := get(t, c, addr, "app.test", path); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
			}
		}
		// The first request's connection is idle; this one takes it and
		// keeps it busy, and the next one opens a second connection, idle
		// once it is answered.
		held := make(chan int, 1)
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/gone/hold", nil)
			req.Host = "app.test"
			resp, err := c.Do(req)
			if err != nil {
				held <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			held <- resp.StatusCode
		}()
		<-holding
		if resp, body := get(t, c, addr, "app.test", "/gone/b"); resp.StatusCode != http.StatusOK {
			t.Fatalf("/gone/b: %d %q", resp.StatusCode, body)
		}
		if n := goneOpen.Load(); n != 2 {
			t.Fatalf("%d connections to the endpoint, want 2 (one busy, one idle)", n)
		}

		h.Swap(table(kept))
		waitFor(t, "the idle connection to the removed endpoint to close", func() bool { return goneOpen.Load() == 1 })
		// The busy connection serves its request to the end, then closes.
		releaseOnce.Do(func() { close(release) })
		if code := <-held; code != http.StatusOK {
			t.Fatalf("the request in flight during the swap got %d, want 200", code)
		}
		waitFor(t, "the busy connection to close after its request", func() bool { return goneOpen.Load() == 0 })
		if n := keptOpen.Load(); n != 1 {
			t.Errorf("%d connections to the kept endpoint, want its idle one kept", n)
		}
		if resp, body := get(t, c, addr, "app.test", "/kept/c"); resp.StatusCode != http.StatusOK || keptOpen.Load() != 1 {
			t.Errorf("/kept/c: %d %q over %d connections, want 200 over the kept one", resp.StatusCode, body, keptOpen.Load())
		}
	})
}
