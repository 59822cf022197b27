package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// testTimeout bounds every wait in these tests: nothing here should take
// more than a fraction of it, so hitting it means a hang, not slowness.
const testTimeout = 10 * time.Second

// testBackend is an endpoint: an httptest server that counts the requests
// it gets and remembers the last one.
type testBackend struct {
	*httptest.Server
	name string
	hits atomic.Int64

	mu    sync.Mutex
	last  *http.Request
	paths []string
}

// newBackend starts a backend on 127.0.0.1. With a nil handler it answers
// 200 with its name and the path it saw.
func newBackend(t testing.TB, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Backend", name)
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}
	}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.paths = append(b.paths, r.URL.RequestURI())
		b.mu.Unlock()
		h(w, r)
	}))
	b.Config.ErrorLog = newStdLog(zap.NewNop())
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *testBackend) addr() string { return b.Listener.Addr().String() }

func (b *testBackend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *testBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...)
}

// backendOf returns a route.Backend named name over the given test
// backends.
func backendOf(name, policy string, bs ...*testBackend) *route.Backend {
	be := &route.Backend{Key: "ns/" + name + ":80", Namespace: "ns", Service: name, Port: "80", Balancer: policy}
	for _, b := range bs {
		be.Endpoints = append(be.Endpoints, route.Endpoint{Address: b.addr()})
	}
	return be
}

func prefix(path string, be *route.Backend) *route.Route {
	return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Backends: route.Single(be), Source: route.Source{Namespace: "ns", Name: "ing"}}
}

func vhost(host string, routes ...*route.Route) *route.VirtualHost {
	return route.NewVirtualHost(host, routes)
}

// engine is how a test's Server reads HTTP/1.1: with the fast path
// (h1Engine, the production default), or with net/http alone. Both decide
// through the same pipeline; a test run over both (forEachEngine) shows a
// behaviour holds on each.
type engine struct {
	name   string
	noFast bool // ServerOptions.NoFastPath
}

var (
	fastPath    = engine{name: "fastpath"}
	netHTTPOnly = engine{name: "nethttp", noFast: true}
	engines     = []engine{fastPath, netHTTPOnly}
)

// forEachEngine runs f as a subtest for each engine.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}

// opts returns opts for a Server of engine e.
func (e engine) opts(opts ServerOptions) ServerOptions {
	opts.NoFastPath = opts.NoFastPath || e.noFast
	return opts
}

// fast reports whether e serves requests with the fast path.
func (e engine) fast() bool { return !e.noFast }

// rawEndpoint serves every connection made to a new loopback listener
// with serve, each on a goroutine of its own, closing the connection when
// serve returns, and returns the listener's address: an endpoint that
// speaks (or does not speak) HTTP exactly as a test needs. The listener
// is closed when the test ends.
func rawEndpoint(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// runServer runs serve (s.Serve or s.ServeTLS on a listener) until the
// test ends; then it shuts s down and checks that both went well.
func runServer(t *testing.T, s *Server, serve func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// startServer serves h through a Server of engine e on 127.0.0.1 and
// returns its address; the server is shut down when the test ends.
func startServer(t *testing.T, e engine, h *Handler, opts ServerOptions) (string, *Server) {
	t.Helper()
	ln := listen(t)
	s := NewServer(h, e.opts(opts))
	runServer(t, s, func() error { return s.Serve(ln) })
	return ln.Addr().String(), s
}

// startProxy serves a Handler for tbl with a Server of engine e and
// returns its address.
func startProxy(t *testing.T, e engine, tbl *route.Table, opts Options) (string, *Handler) {
	t.Helper()
	h := New(opts)
	h.Swap(tbl)
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startServer(t, e, h, ServerOptions{})
	return addr, h
}

// served returns how many requests the fast path of s decided (0 when it
// has none).
func served(s *Server) int64 {
	if s.fast == nil {
		return 0
	}
	return s.fast.served.Load()
}

// newClient returns a client that never uses an environment proxy and
// gives up after testTimeout.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// reply is what tests look at in a response whose body was read and closed.
type reply struct {
	StatusCode int
	Header     http.Header
	TLS        *tls.ConnectionState
}

// get sends GET http://addr/path with Host host and returns the response
// with its body read.
func get(t *testing.T, c *http.Client, addr, host, path string) (reply, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (reply, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", req.Method, req.URL, req.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return reply{resp.StatusCode, resp.Header, resp.TLS}, string(body)
}

// rawConn dials addr with a deadline of testTimeout.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawResponse is a response read off a raw connection, body included.
type rawResponse struct {
	*http.Response
	body string
}

// readResponses reads n responses (fewer if the connection ends first)
// from br.
func readResponses(t *testing.T, br *bufio.Reader, n int) []rawResponse {
	t.Helper()
	var out []rawResponse
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		out = append(out, rawResponse{resp, string(body)})
	}
	return out
}

// exchange writes req on a new connection to addr and reads n responses
// (fewer if the connection ends first).
func exchange(t *testing.T, addr, req string, n int) ([]rawResponse, net.Conn, *bufio.Reader) {
	t.Helper()
	c := rawConn(t, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	return readResponses(t, br, n), c, br
}

// closedByServer reports whether the server closes c without sending
// anything more. Call it only when the server should close c: on a
// connection kept open it waits for testTimeout.
func closedByServer(c net.Conn, br *bufio.Reader) bool {
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := br.ReadByte()
	return err == io.EOF
}

// keptOpen reports whether the server still answers on c: it sends one
// more request and reads the response.
func keptOpen(t *testing.T, c net.Conn, br *bufio.Reader) bool {
	t.Helper()
	if _, err := io.WriteString(c, "GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n"); err != nil {
		return false
	}
	resps := readResponses(t, br, 1)
	return len(resps) == 1
}

// crlf turns the readable "\n" line ends of a test request into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// checkErrorBody checks that a response the proxy made itself is short,
// plain text and says nothing about the backends.
func checkErrorBody(t *testing.T, h http.Header, body string, code int, secrets ...string) {
	t.Helper()
	if want := pipeline.ErrorBody(code); body != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	if ct := h.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", h.Get("X-Content-Type-Options"))
	}
	for _, s := range append(secrets, "127.0.0.1", "dial", "refused", "i/o") {
		if s != "" && strings.Contains(body, s) {
			t.Errorf("body %q leaks %q", body, s)
		}
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// listen listens on a free port of 127.0.0.1.
func listen(t testing.TB) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// mustTrusted parses items as --trusted-proxies does; nil items give nil
// (no one trusted).
func mustTrusted(tb testing.TB, items []string) *pipeline.TrustedProxies {
	tb.Helper()
	if items == nil {
		return nil
	}
	tp, err := pipeline.ParseTrustedProxies(items)
	if err != nil {
		tb.Fatal(err)
	}
	return tp
}
