package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

func TestParseH1Resp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, head string
		isHead     bool
		ok         bool
		status     int
		body       Body
		cl         int64
		close      bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, true, 200, BodyLength, 5, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, true, 200, BodyChunked, -1, false},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\n", false, true, 200, BodyClose, -1, true},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, true, 200, BodyNone, 5, false},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", false, true, 204, BodyNone, -1, false},
		{"304 with length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, true, 304, BodyNone, 9, false},
		{"103", "HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n", false, true, 103, BodyNone, -1, false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, true, 200, BodyLength, 0, false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, true, 200, BodyLength, 1, true},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, true, 200, BodyLength, 1, false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, true, 200, BodyLength, 1, true},

		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, false, 0, 0, 0, false},
		{"cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, 0, 0, 0, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, false, 0, 0, 0, false},
		{"gzip te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, false, 0, 0, 0, false},
		{"http/2", "HTTP/2.0 200 OK\r\n\r\n", false, false, 0, 0, 0, false},
		{"short status", "HTTP/1.1 20 OK\r\n\r\n", false, false, 0, 0, 0, false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", false, false, 0, 0, 0, false},
		{"nul", "HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n", false, false, 0, 0, 0, false},
		{"connection names a field", "HTTP/1.1 200 OK\r\nConnection: x-a\r\nContent-Length: 0\r\n\r\n", false, false, 0, 0, 0, false},
	}
	var r Resp
	for _, tc := range tests {
		ok := ParseResp([]byte(tc.head), tc.isHead, &r)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if ok && (r.Status != tc.status || r.Body != tc.body || r.ContentLength != tc.cl || r.CloseConn != tc.close) {
			t.Errorf("%s: status %d body %d length %d close %v, want %d %d %d %v", tc.name, r.Status, r.Body, r.ContentLength, r.CloseConn, tc.status, tc.body, tc.cl, tc.close)
		}
	}
}

// FuzzH1Resp checks ParseResp against net/http's ReadResponse: a head the
// fast path relays must be one net/http reads the same way (status,
// framing, keep-alive).
func FuzzH1Resp(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, isHead bool) {
		end := HeadEnd(data)
		if end < 0 {
			return
		}
		head := data[:end]
		var r Resp
		if !ParseResp(head, isHead, &r) {
			return
		}
		method := http.MethodGet
		if isHead {
			method = http.MethodHead
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("relayed by the fast path, refused by net/http (%v):\n%q", err, head)
		}
		defer resp.Body.Close()
		if resp.StatusCode != r.Status {
			t.Fatalf("status: net/http %d, fast path %d:\n%q", resp.StatusCode, r.Status, head)
		}
		chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		switch r.Body {
		case BodyChunked:
			if !chunked {
				t.Fatalf("fast path chunked, net/http %v:\n%q", resp.TransferEncoding, head)
			}
		case BodyLength:
			if chunked || resp.ContentLength != r.ContentLength {
				t.Fatalf("fast path length %d, net/http %d (chunked %v):\n%q", r.ContentLength, resp.ContentLength, chunked, head)
			}
		case BodyClose:
			if chunked || resp.ContentLength != -1 || !resp.Close {
				t.Fatalf("fast path close-delimited, net/http length %d chunked %v close %v:\n%q", resp.ContentLength, chunked, resp.Close, head)
			}
		}
		if r.CloseConn != resp.Close && r.Body != BodyNone {
			t.Fatalf("close: net/http %v, fast path %v:\n%q", resp.Close, r.CloseConn, head)
		}
	})
}

// BenchmarkParseResp measures ParseResp on typical backend response heads:
// the cost the fast path pays per response before it relays a byte.
func BenchmarkParseResp(b *testing.B) {
	heads := []struct{ name, head string }{
		{"length", "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n" +
			"Date: Wed, 02 Dec 2026 15:00:00 GMT\r\nCache-Control: no-cache\r\nEtag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n" +
			"Vary: Accept-Encoding\r\nServer: backend\r\n\r\n"},
		{"chunked keep-alive", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
			"Connection: keep-alive\r\nDate: Wed, 02 Dec 2026 15:00:00 GMT\r\n\r\n"},
	}
	for _, h := range heads {
		b.Run(h.name, func(b *testing.B) {
			head := []byte(h.head)
			var r Resp
			b.SetBytes(int64(len(head)))
			b.ReportAllocs()
			for b.Loop() {
				if !ParseResp(head, false, &r) {
					b.Fatal("not parsed")
				}
			}
		})
	}
}

// TestConnectionOptionsDoNotAllocate: the request and response parsers
// read a Connection field's options without allocating (bytes.Split
// cost one allocation per head that had one), with the same verdicts.
func TestConnectionOptionsDoNotAllocate(t *testing.T) {
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, , close\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive,close\r\n\r\n")
	var h Head
	var r Resp
	if n := testing.AllocsPerRun(100, func() {
		if !ParseHead(req, &h) || !ParseResp(resp, false, &r) {
			t.Fatal("not parsed")
		}
	}); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
	if !h.CloseConn || !r.CloseConn {
		t.Errorf("close: request %v, response %v; want both", h.CloseConn, r.CloseConn)
	}
	if ParseHead([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\n\r\n"), &h) {
		t.Error("a request naming another field in Connection was accepted")
	}
}
