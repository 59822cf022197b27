package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// echoBackend echoes request bodies and counts the requests it read
// completely.
type echoBackend struct {
	*testBackend
	complete atomic.Int64
}

// smuggleProxy starts a proxy whose default backend echoes the request
// body, and returns the proxy's address and the backend.
func smuggleProxy(t *testing.T, e engine, opts ServerOptions) (string, *echoBackend) {
	t.Helper()
	eb := new(echoBackend)
	eb.testBackend = newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		eb.complete.Add(1)
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = w.Write(body)
	})
	b := eb.testBackend
	h := New(Options{})
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startServer(t, e, h, opts)
	return addr, eb
}

// malformedCase is one request of TestMalformedFraming, sent alone on a raw
// connection.
type malformedCase struct {
	name      string
	req       string
	want      int
	body      string // for good requests, what the backend echoes
	close     bool   // the connection must be closed after the response
	bodyError bool   // the framing error is in the body
}

// framingCases are the good requests of TestMalformedFraming and the bad
// ones Postern's framing guard answers.
func framingCases() []malformedCase {
	return []malformedCase{
		{name: "good Content-Length", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello", want: 200, body: "hello"},
		{name: "good chunked", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n", want: 200, body: "hello"},
		{name: "chunked with extension and trailer", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: Chunked\n\n5;ext=1\nhello\n0\nX-Sum: 1\n\n", want: 200, body: "hello"},
		{name: "equal duplicate Content-Length", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 5\n\nhello", want: 200, body: "hello"},
		{name: "chunk extensions in grammar", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5; a = \"q\\\"t\" ;b;c=d\t\nhello\n0;e\n\n", want: 200, body: "hello"},
		{name: "absolute-form, same Host", req: "POST http://A/x HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi", want: 200, body: "hi"},
		{name: "absolute-form, HTTP/1.0 without Host", req: "POST http://a/x HTTP/1.0\nContent-Length: 2\n\nhi", want: 200, body: "hi", close: true},

		{name: "Content-Length then Transfer-Encoding", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\n", want: 400, close: true},
		{name: "Transfer-Encoding then Content-Length", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 30\n\n0\n\n", want: 400, close: true},
		{name: "Content-Length zero and chunked", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 0\n\n0\n\n", want: 400, close: true},
		{name: "folded Transfer-Encoding", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding:\n chunked\n\n0\n\n", want: 400, close: true},
		{name: "obs-fold", req: "GET / HTTP/1.1\nHost: a\nX-Long: a\n b\n\n", want: 400, close: true},
		{name: "HTTP/1.0 with Transfer-Encoding", req: "POST / HTTP/1.0\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 5\n\nhello", want: 400, close: true},
		{name: "HTTP/1.0 with Transfer-Encoding only", req: "POST / HTTP/1.0\nHost: a\nTransfer-Encoding: chunked\n\n0\n\n", want: 400, close: true},
		{name: "bad chunk size", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\nzz\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "negative chunk size", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n-5\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk size overflows 64 bits", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n10000000000000005\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk size 0x", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n0x5\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "second chunk size bad", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n5g\nworld\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk extension with NUL", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;a\x00\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk extension quote left open", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;a=\"b\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk extension without name", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;=b\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk extension empty", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5;\nhello\n0\n\n", want: 400, close: true, bodyError: true},
		{name: "chunk extension bare CR", req: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", want: 400, close: true, bodyError: true},
		{name: "last chunk extension garbage", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0;a b\n\n", want: 400, close: true, bodyError: true},
		{name: "obs-fold with tab", req: "GET / HTTP/1.1\nHost: a\nX-Long: a\n\tb\n\n", want: 400, close: true},
		{name: "absolute-form, other Host", req: "GET http://evil.example/ HTTP/1.1\nHost: a\n\n", want: 400, close: true},
		{name: "absolute-form, other port", req: "GET http://a:8080/ HTTP/1.1\nHost: a\n\n", want: 400, close: true},
		{name: "absolute-form, long Host", req: "GET http://a/ HTTP/1.1\nHost: a" + strings.Repeat("a", 300) + "\n\n", want: 400, close: true},
		{name: "bare LF ends a field before Transfer-Encoding", req: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: 400, close: true},
		{name: "bare LF after chunk size", req: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", want: 400, close: true, bodyError: true},
	}
}

// goParserFramingCases are the bad requests of TestMalformedFraming that
// Go's own parser answers before any handler runs.
func goParserFramingCases() []malformedCase {
	return []malformedCase{
		{name: "two Transfer-Encoding fields", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n0\n\n", want: 501, close: true},
		{name: "Transfer-Encoding list", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked\n\n0\n\n", want: 501, close: true},
		{name: "unknown Transfer-Encoding", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: xchunked\n\n0\n\n", want: 501, close: true},
		{name: "differing Content-Length", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 6\n\nhello!", want: 400, close: true},
		{name: "bad Content-Length", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5x\n\nhello", want: 400, close: true},
		{name: "negative Content-Length", req: "POST / HTTP/1.1\nHost: a\nContent-Length: -1\n\n", want: 400, close: true},
		{name: "Content-Length list", req: "POST / HTTP/1.1\nHost: a\nContent-Length: 5, 5\n\nhello", want: 400, close: true},
		{name: "space before colon", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding : chunked\nContent-Length: 5\n\nhello", want: 400, close: true},
		{name: "no Host", req: "GET / HTTP/1.1\n\n", want: 400, close: true},
		{name: "NUL in a field value", req: "GET / HTTP/1.1\nHost: a\nX-A: a\x00b\n\n", want: 400, close: true},
		{name: "NUL in Transfer-Encoding", req: "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\x00\nContent-Length: 5\n\nhello", want: 400, close: true},
		{name: "bare CR in a field value", req: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", want: 400, close: true},
		{name: "bare CR hiding Transfer-Encoding", req: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: 400, close: true},
		{name: "duplicate Host", req: "GET / HTTP/1.1\nHost: a\nHost: b\n\n", want: 400, close: true},
		{name: "HTTP/2.0 request line", req: "GET / HTTP/2.0\nHost: a\n\n", want: 505, close: true},
	}
}

// TestMalformedFraming sends requests on raw connections. The bad ones are
// answered 400, 501 or 505 (by Postern's framing guard or by Go's own
// parser) and the connection is closed. A request with malformed header
// framing never reaches the backend. A body found malformed mid-stream
// (bodyError) can only be cut off: the backend sees the request start and
// its body fail, never a complete request, and nothing after it.
func TestMalformedFraming(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		tests := append(framingCases(), goParserFramingCases()...)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				addr, b := smuggleProxy(t, e, ServerOptions{})
				req := tt.req
				if !strings.Contains(req, "\r\n") {
					req = crlf(req)
				}
				resps, c, br := exchange(t, addr, req, 1)
				if len(resps) != 1 {
					t.Fatalf("got %d responses, want 1", len(resps))
				}
				r := resps[0]
				if r.StatusCode != tt.want {
					t.Fatalf("status %d %q, want %d", r.StatusCode, r.body, tt.want)
				}
				switch {
				case tt.want == 200:
					if r.body != tt.body {
						t.Errorf("backend echoed %q, want %q", r.body, tt.body)
					}
				case tt.bodyError:
					if n := b.complete.Load(); n != 0 {
						t.Errorf("backend read %d complete requests, want none", n)
					}
				default:
					if n := b.hits.Load(); n != 0 {
						t.Errorf("backend got %d requests (%v), want none", n, b.seen())
					}
				}
				if tt.close {
					if !closedByServer(c, br) {
						t.Error("connection not closed after the response")
					}
				} else if !keptOpen(t, c, br) {
					t.Error("connection not kept open")
				}
			})
		}
	})
}

func TestOversizeHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		big := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 80<<10) + "\r\n\r\n"
		t.Run("default limit", func(t *testing.T) {
			t.Parallel()
			addr, b := smuggleProxy(t, e, ServerOptions{})
			resps, _, _ := exchange(t, addr, big, 1)
			if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("responses %v, want 431", resps)
			}
			if b.hits.Load() != 0 {
				t.Error("backend was reached")
			}
			// Just under the limit is served.
			ok := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 60<<10) + "\r\n\r\n"
			if resps, _, _ := exchange(t, addr, ok, 1); len(resps) != 1 || resps[0].StatusCode != http.StatusOK {
				t.Fatalf("60 KiB of headers: %v, want 200", resps)
			}
		})
		t.Run("configured limit", func(t *testing.T) {
			t.Parallel()
			addr, b := smuggleProxy(t, e, ServerOptions{MaxHeaderBytes: 1 << 10})
			// Go allows MaxHeaderBytes plus 4 KiB of slack for the request line.
			req := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 8<<10) + "\r\n\r\n"
			resps, _, _ := exchange(t, addr, req, 1)
			if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("responses %v, want 431", resps)
			}
			if b.hits.Load() != 0 {
				t.Error("backend was reached")
			}
		})
	})
}

// TestKeepAliveSmuggling is the attack itself: on one keep-alive
// connection, a request whose body, if framed by Content-Length, hides a
// second request. The proxy must answer 400 and close, and the hidden
// request must never reach the backend.
func TestKeepAliveSmuggling(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		hidden := "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
		smuggle := "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden
		first := "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
		after := "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"

		t.Run("sequential", func(t *testing.T) {
			t.Parallel()
			addr, b := smuggleProxy(t, e, ServerOptions{})
			c := rawConn(t, addr)
			br := bufio.NewReader(c)
			_, _ = io.WriteString(c, first)
			if r := readResponses(t, br, 1); len(r) != 1 || r[0].StatusCode != http.StatusOK {
				t.Fatalf("first request: %v", r)
			}
			_, _ = io.WriteString(c, smuggle)
			r := readResponses(t, br, 1)
			if len(r) != 1 || r[0].StatusCode != http.StatusBadRequest || !r[0].Close {
				t.Fatalf("smuggling request: %v, want one 400 with Connection: close", r)
			}
			if !closedByServer(c, br) {
				t.Error("connection not closed after the 400")
			}
			if got := strings.Join(b.seen(), ","); got != "/first" {
				t.Errorf("backend saw %s, want /first only", got)
			}
		})
		t.Run("pipelined", func(t *testing.T) {
			t.Parallel()
			addr, b := smuggleProxy(t, e, ServerOptions{})
			resps, c, br := exchange(t, addr, first+smuggle+after, 2)
			var codes []int
			for _, r := range resps {
				codes = append(codes, r.StatusCode)
			}
			closed := closedByServer(c, br)
			if len(codes) != 2 || codes[0] != 200 || codes[1] != 400 || !closed {
				t.Fatalf("statuses %v (closed %v), want [200 400] and a closed connection", codes, closed)
			}
			if got := strings.Join(b.seen(), ","); got != "/first" {
				t.Errorf("backend saw %s, want /first only", got)
			}
		})
	})
}

// TestKeepAliveStaysInStep sends many requests with bodies of every
// framing on one connection, pipelined, and sequentially: the framing
// parser must follow every boundary, or a good request would get 400.
func TestKeepAliveStaysInStep(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		addr, b := smuggleProxy(t, e, ServerOptions{})
		reqs := []string{
			"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
			"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
			"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n",
			"PUT /4?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
			"GET /5 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
			"POST /6 HTTP/1.1\nHost: a\nContent-Length: 3\n\nxyz",
			"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		}
		var all strings.Builder
		for range 10 {
			for _, r := range reqs {
				all.WriteString(r)
			}
		}
		c := rawConn(t, addr)
		br := bufio.NewReader(c)
		go func() { _, _ = io.WriteString(c, all.String()) }()
		resps := readResponses(t, br, 10*len(reqs))
		if len(resps) != 10*len(reqs) {
			t.Fatalf("got %d responses, want %d", len(resps), 10*len(reqs))
		}
		for i, r := range resps {
			if r.StatusCode != http.StatusOK {
				t.Fatalf("response %d: %d %q", i, r.StatusCode, r.body)
			}
		}
		if n := b.hits.Load(); n != 60 {
			t.Errorf("backend got %d requests, want 60", n)
		}
		// And one at a time on the same connection.
		for _, r := range reqs {
			_, _ = io.WriteString(c, r)
			if got := readResponses(t, br, 1); len(got) != 1 || got[0].StatusCode != http.StatusOK {
				t.Fatalf("%q: %v", r, got)
			}
		}
	})
}

// TestSmugglingOverTLS: HTTP/1.1 over TLS goes through the same checks
// (TestServeTLSFramingGuard covers Content-Length with Transfer-Encoding).
func TestSmugglingOverTLS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		tests := []struct {
			name, req string
			bodyError bool
		}{
			{name: "absolute-form, other Host", req: "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"},
			{name: "obs-fold", req: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n"},
			{name: "chunk extension garbage", req: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", bodyError: true},
		}
		pki := newTestPKI(t, "default")
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				eb := new(echoBackend)
				eb.testBackend = newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
					if _, err := io.ReadAll(r.Body); err == nil {
						eb.complete.Add(1)
					}
				})
				h := New(Options{})
				t.Cleanup(h.CloseIdleConnections)
				h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", eb.testBackend))}))
				addr, _, _ := startTLSServer(t, e, h, pki.serverConfig())
				c := dialTLS(t, addr, &tls.Config{RootCAs: pki.pool, ServerName: "default", NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
				if _, err := io.WriteString(c, tt.req); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resps := readResponses(t, br, 2)
				if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest {
					t.Fatalf("responses %v, want one 400 and a closed connection", resps)
				}
				if n := eb.complete.Load(); tt.bodyError && n != 0 {
					t.Errorf("the backend read %d complete requests, want none", n)
				}
				if n := eb.hits.Load(); !tt.bodyError && n != 0 {
					t.Errorf("the backend got %d requests, want none", n)
				}
			})
		}
	})
}
