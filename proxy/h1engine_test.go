package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// startFastProxy serves tbl through a Server with the fast path on.
func startFastProxy(t *testing.T, tbl *route.Table) string {
	t.Helper()
	h := New(Options{})
	h.Swap(tbl)
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startServer(t, fastPath, h, ServerOptions{})
	return addr
}

func TestH1EngineProxies(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	peers := map[string]bool{}
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers[r.RemoteAddr] = true
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			_, _ = w.Write([]byte("one,"))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("two"))
		default:
			fmt.Fprintf(w, "%s %s body=%q xff=%s host=%s te=%v", r.Method, r.URL.RequestURI(), body,
				r.Header.Get("X-Forwarded-For"), r.Host, r.TransferEncoding)
		}
	})
	tbl := route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", b)))}, nil)
	addr := startFastProxy(t, tbl)

	req := "GET /a?x=1 HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n" +
		"POST /post HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello" +
		"PUT /put HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /chunked HTTP/1.1\r\nHost: app.example.com\r\n\r\n" +
		"GET /%61 HTTP/1.1\r\nHost: app.example.com\r\n\r\n" + // percent-encoded: handed to net/http
		"GET /after-handoff HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
	resps, c, _ := exchange(t, addr, req, 6)
	defer c.Close()
	want := []string{
		`GET /a?x=1 body="" xff=127.0.0.1 host=app.example.com te=[]`,
		`POST /post body="hello" xff=127.0.0.1 host=app.example.com te=[]`,
		`PUT /put body="abc" xff=127.0.0.1 host=app.example.com te=[chunked]`,
		`one,two`,
		`GET /%61 body="" xff=127.0.0.1 host=app.example.com te=[]`,
		`GET /after-handoff body="" xff=127.0.0.1 host=app.example.com te=[]`,
	}
	if len(resps) != len(want) {
		t.Fatalf("%d responses, want %d: %+v", len(resps), len(want), resps)
	}
	for i, r := range resps {
		if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.body, want[i]) {
			t.Errorf("response %d = %d %q, want 200 %q", i, r.StatusCode, r.body, want[i])
		}
	}
	mu.Lock()
	n := len(peers)
	mu.Unlock()
	if n > 2 {
		t.Errorf("the backend saw %d connections for 6 requests, want them reused (at most 2: engine and net/http)", n)
	}
}

func TestH1EngineHandsOff(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	tbl := route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", b)))}, nil)
	addr := startFastProxy(t, tbl)
	for _, tc := range []struct {
		req  string
		code int
	}{
		{"GET / HTTP/1.1\r\nHost: nothing.example.com\r\n\r\n", http.StatusNotFound},
		{"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\nHost: app.example.com\r\nX: a\r\n b\r\n\r\n", http.StatusBadRequest},
		{"GET http://evil.example.com/ HTTP/1.1\r\nHost: app.example.com\r\n\r\n", http.StatusBadRequest},
	} {
		resps, c, _ := exchange(t, addr, tc.req, 1)
		c.Close()
		if len(resps) != 1 || resps[0].StatusCode != tc.code {
			t.Errorf("%q: %+v, want %d", tc.req, resps, tc.code)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the backend got %d requests, want none", n)
	}
}

// A backend that closes each connection after one response, without
// saying so: the engine's next request on that idle connection fails
// before any response byte, and is sent again on a new connection.
func TestH1EngineStaleConnection(t *testing.T) {
	t.Parallel()
	be := &route.Backend{Key: "ns/raw:80", Endpoints: []route.Endpoint{{Address: oneShotEndpoint(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}}}
	addr := startFastProxy(t, route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", be))}, nil))
	c := rawConn(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resps := readResponses(t, br, 1)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || resps[0].body != "ok" {
			t.Fatalf("request %d: %+v, want 200 ok", i, resps)
		}
		time.Sleep(20 * time.Millisecond) // let the backend's close arrive
	}
}

// startFastServer serves h through a Server with the fast path on, and
// returns the address and the Server.
func startFastServer(t *testing.T, h *Handler, opts ServerOptions) (string, *Server) {
	t.Helper()
	return startServer(t, fastPath, h, opts)
}

// TestH1EngineObserves checks that a request the engine serves is
// counted, access-logged and given a request ID as the Handler does it.
func TestH1EngineObserves(t *testing.T) {
	t.Parallel()
	var seenID []string
	var mu sync.Mutex
	b := newBackend(t, "api", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenID = append(seenID, r.Header.Get(pipeline.HeaderRequestID))
		mu.Unlock()
		w.Header().Set(pipeline.HeaderRequestID, "from-backend") // replaced by the proxy's
		_, _ = io.WriteString(w, "hello")
	})
	var logOut syncBuffer
	al := observe.NewAccessLog(observe.AccessLogOptions{Output: &logOut, Sample: 1})
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)
	h := New(Options{Metrics: m, AccessLog: al})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("shop.example.com", shopRoute("/api", backendOf("api", "", b)))}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, s := startFastServer(t, h, ServerOptions{Metrics: m})

	req := "GET /api/a?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nX-Request-Id: client-id-1\r\n\r\n" +
		"POST /api/b HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 3\r\nX-Request-Id: bad id\r\n\r\nabc"
	resps, c, _ := exchange(t, addr, req, 2)
	c.Close()
	if len(resps) != 2 {
		t.Fatalf("%d responses, want 2", len(resps))
	}
	if s.fast.served.Load() != 2 {
		t.Fatalf("the engine served %d requests, want 2", s.fast.served.Load())
	}
	gen := resps[1].Header.Get(pipeline.HeaderRequestID)
	if got := resps[0].Header.Get(pipeline.HeaderRequestID); got != "client-id-1" {
		t.Errorf("response 1 X-Request-Id %q, want the client's", got)
	}
	if len(gen) != 32 || gen == "bad id" {
		t.Errorf("response 2 X-Request-Id %q, want a generated one", gen)
	}
	mu.Lock()
	if len(seenID) != 2 || seenID[0] != "client-id-1" || seenID[1] != gen {
		t.Errorf("the backend saw IDs %q, want [client-id-1 %s]", seenID, gen)
	}
	mu.Unlock()

	if n := gather(t, reg, "postern_proxy_requests_total")[reqLabels("ns", "shop", "api", "GET", "200")].value; n != 1 {
		t.Errorf("GET 200 counted %v times, want 1", n)
	}
	if n := gather(t, reg, "postern_proxy_requests_total")[reqLabels("ns", "shop", "api", "POST", "200")].value; n != 1 {
		t.Errorf("POST 200 counted %v times, want 1", n)
	}
	closeLog(t, al)
	lines := logOut.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2", len(lines))
	}
	want := map[string]any{"request_id": gen, "method": "POST", "host": "shop.example.com", "path": "/api/b",
		"status": float64(200), "bytes_in": float64(3), "bytes_out": float64(5), "upstream": b.addr(), "ingress": "shop"}
	for k, v := range want {
		if lines[1][k] != v {
			t.Errorf("access log %s = %v, want %v", k, lines[1][k], v)
		}
	}
}

// TestH1EngineRetriesDeadEndpoint checks retries and passive health on
// the fast path: an endpoint that refuses connections costs no request.
func TestH1EngineRetriesDeadEndpoint(t *testing.T) {
	t.Parallel()
	live := newBackend(t, "live", nil)
	dead := deadAddr(t)
	be := backendOf("svc", "", live)
	be.Endpoints = append(be.Endpoints, route.Endpoint{Address: dead})
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)
	h := New(Options{Metrics: m})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", be))}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, s := startFastServer(t, h, ServerOptions{})
	var req strings.Builder
	for range 10 {
		req.WriteString("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	}
	resps, c, _ := exchange(t, addr, req.String(), 10)
	c.Close()
	if len(resps) != 10 {
		t.Fatalf("%d responses, want 10", len(resps))
	}
	for i, r := range resps {
		if r.StatusCode != http.StatusOK {
			t.Errorf("response %d: %d", i, r.StatusCode)
		}
	}
	if s.fast.served.Load() != 10 {
		t.Errorf("the engine served %d, want 10", s.fast.served.Load())
	}
	if n := scalar(t, reg, "postern_proxy_retries_total"); n < 1 {
		t.Errorf("retries = %v, want at least 1", n)
	}
	if !h.cluster.Health().Ejected(dead) {
		t.Error("the dead endpoint is not ejected")
	}
}

// TestH1EngineInterimResponses checks that 1xx responses before the final
// one are passed on.
func TestH1EngineInterimResponses(t *testing.T) {
	t.Parallel()
	ln := rawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	be := &route.Backend{Key: "ns/raw:80", Endpoints: []route.Endpoint{{Address: ln}}}
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", be))}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, s := startFastServer(t, h, ServerOptions{})
	c := rawConn(t, addr)
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 103 Early Hints\r\n" {
		t.Fatalf("first line %q, %v; want the 103", status, err)
	}
	var hints []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		hints = append(hints, line)
	}
	if len(hints) != 1 || hints[0] != "Link: </s.css>; rel=preload\r\n" {
		t.Errorf("103 fields %q, want the Link", hints)
	}
	resps := readResponses(t, br, 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || resps[0].body != "ok" {
		t.Fatalf("final response %+v, want 200 ok", resps)
	}
	if s.fast.served.Load() != 1 {
		t.Errorf("the engine served %d, want 1", s.fast.served.Load())
	}
}

// rawBackend answers every request on every connection with resp, and
// returns its address.
func rawBackend(t *testing.T, resp string) string {
	t.Helper()
	return rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
}

// oneShotEndpoint answers the first request head of every connection with
// resp, without reading any body, and closes the connection without
// saying so in resp.
func oneShotEndpoint(t *testing.T, resp string) string {
	t.Helper()
	return rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, resp)
	})
}

// TestH1EngineShutdownDrains checks that Shutdown lets a request the
// engine is serving finish, closes the connection after it, and returns.
func TestH1EngineShutdownDrains(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	h := New(Options{})
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("slow", "", b))}))
	t.Cleanup(h.CloseIdleConnections)
	ln := listen(t)
	s := NewServer(h, ServerOptions{})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	idle := rawConn(t, ln.Addr().String()) // no request: closed by Shutdown
	defer idle.Close()
	c := rawConn(t, ln.Addr().String())
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	br := bufio.NewReader(c)
	resps := readResponses(t, br, 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || resps[0].body != "done" {
		t.Fatalf("the request in flight got %+v, want 200 done", resps)
	}
	if !resps[0].Close {
		t.Error("the response during shutdown does not say Connection: close")
	}
	if !closedByServer(c, br) {
		t.Error("the busy connection was not closed after its response")
	}
	if !closedByServer(idle, bufio.NewReader(idle)) {
		t.Error("the idle connection was not closed")
	}
}

// TestH1EngineDrainsRemovedEndpoint checks that the engine's idle
// connections to an endpoint the table drops are closed at the swap.
func TestH1EngineDrainsRemovedEndpoint(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 10)
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", "old")
	}))
	b.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	other := newBackend(t, "new", nil)
	h := New(Options{})
	old := &route.Backend{Key: "ns/svc:80", Endpoints: []route.Endpoint{{Address: b.Listener.Addr().String()}}}
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(old)}))
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startFastServer(t, h, ServerOptions{})
	resps, c, _ := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	if len(resps) != 1 || resps[0].Header.Get("X-Backend") != "old" {
		t.Fatalf("%+v, want a response of the old backend", resps)
	}
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("svc", "", other))}))
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("the idle connection to the removed endpoint was not closed")
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resps := readResponses(t, bufio.NewReader(c), 1); len(resps) != 1 || resps[0].Header.Get("X-Backend") != "new" {
		t.Fatalf("%+v, want a response of the new backend on the same client connection", resps)
	}
	c.Close()
}

// TestH1EngineTLS checks the fast path on HTTPS: HTTP/1.1 connections are
// served by the engine with X-Forwarded-Proto https and the host's HSTS;
// a Host the certificate does not cover gets 421 from the engine itself
// (the pipeline's); HTTP/2 connections go to net/http.
func TestH1EngineTLS(t *testing.T) {
	t.Parallel()
	var protos []string
	var mu sync.Mutex
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Header.Get("X-Forwarded-Proto"))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	pki := newTestPKI(t, "app.test", "other.test")
	be := backendOf("b", "", b)
	tbl := route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", be)), vhost("other.test", prefix("/", be))}, nil).
		WithTLS([]*route.TLSHost{{Host: "app.test", HSTS: "max-age=600"}, {Host: "other.test"}})
	h := New(Options{})
	h.Swap(tbl)
	t.Cleanup(h.CloseIdleConnections)
	covers := func(serverName, host string) bool { return serverName == host }
	s := NewServer(h, ServerOptions{})
	ln := listen(t)
	runServer(t, s, func() error { return s.ServeTLS(ln, TLSOptions{Config: pki.serverConfig(), Covers: covers}) })
	addr := ln.Addr().String()

	c := dialTo(tlsClient(pki.pool, false), addr)
	get := func(c *http.Client) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://app.test/", nil)
		return c.Do(req)
	}
	resp, err := get(c)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" || resp.ProtoMajor != 1 {
		t.Fatalf("%s %d %q, want HTTP/1.1 200 ok", resp.Proto, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=600" {
		t.Errorf("Strict-Transport-Security %q, want the host's", got)
	}
	if s.fast.served.Load() != 1 {
		t.Fatalf("the engine served %d requests, want 1", s.fast.served.Load())
	}

	// The same connection (SNI app.test) asked for other.test: 421, on
	// the fast path.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://app.test/", nil)
	req.Host = "other.test"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host not covered: %d, want 421", resp.StatusCode)
	}

	h2 := dialTo(tlsClient(pki.pool, true), addr)
	resp, err = get(h2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") != "max-age=600" {
		t.Errorf("HTTP/2: %s %d HSTS %q, want HTTP/2 200 with HSTS", resp.Proto, resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if s.fast.served.Load() != 2 {
		t.Errorf("the engine served %d requests, want 2 (the 200 and the 421; HTTP/2 left to net/http)", s.fast.served.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for i, p := range protos {
		if p != "https" {
			t.Errorf("request %d: X-Forwarded-Proto %q, want https", i, p)
		}
	}
}
