package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// startFastProxy serves tbl through a Server with the fast path on.
func startFastProxy(t *testing.T, tbl *route.Table) string {
	t.Helper()
	h := New(Options{})
	h.Swap(tbl)
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startServer(t, h, ServerOptions{FastPath: h})
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
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	be := &route.Backend{Key: "ns/raw:80", Endpoints: []route.Endpoint{{Address: ln.Addr().String()}}}
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
