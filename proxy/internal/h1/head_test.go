package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestParseH1Head(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, head string
		ok         bool
		cl         int64
		chunked    bool
		close      bool
	}{
		{"get", "GET /a?b=c HTTP/1.1\r\nHost: x.example.com\r\nUser-Agent: t\r\n\r\n", true, -1, false, false},
		{"post with length", "POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", true, 12, false, false},
		{"chunked", "PUT /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", true, -1, true, false},
		{"connection close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", true, -1, false, true},
		{"ows around values", "GET / HTTP/1.1\r\nHost: \t x \t\r\nContent-Length:  0 \r\n\r\n", true, 0, false, false},

		{"http/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, -1, false, false},
		{"absolute-form", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"lower-case method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false, -1, false, false},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", false, -1, false, false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false, -1, false, false},
		{"cl and te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, -1, false, false},
		{"te and cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", false, -1, false, false},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", false, -1, false, false},
		{"signed content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", false, -1, false, false},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, -1, false, false},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", false, -1, false, false},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", false, -1, false, false},
		{"nul in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", false, -1, false, false},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", false, -1, false, false},
		{"bare lf line end", "GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", false, -1, false, false},
		{"upgrade", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false, -1, false, false},
		{"expect", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n", false, -1, false, false},
		{"connection names a field", "GET / HTTP/1.1\r\nHost: x\r\nConnection: x-secret\r\n\r\n", false, -1, false, false},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", false, -1, false, false},
		{"trailing bytes", "GET / HTTP/1.1\r\nHost: x\r\n\r\nX", false, -1, false, false},
	}
	var h Head
	for _, tc := range tests {
		ok := ParseHead([]byte(tc.head), &h)
		if ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if ok && (h.ContentLength != tc.cl || h.Chunked != tc.chunked || h.CloseConn != tc.close) {
			t.Errorf("%s: length %d chunked %v close %v, want %d %v %v", tc.name, h.ContentLength, h.Chunked, h.CloseConn, tc.cl, tc.chunked, tc.close)
		}
	}
}

func TestParseH1HeadFieldLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	for i := range maxFields {
		b.WriteString("X-" + strconv.Itoa(i) + ": v\r\n")
	}
	b.WriteString("\r\n")
	var h Head
	if ParseHead([]byte(b.String()), &h) {
		t.Errorf("a head of %d fields was taken, want at most %d", maxFields+1, maxFields)
	}
}

// FuzzH1Head checks ParseHead against net/http and the framing guard: a
// head the fast path takes must be one net/http reads the same way (method,
// target, Host, framing, every field) and the guard lets through.
func FuzzH1Head(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Y: z\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end := HeadEnd(data)
		if end < 0 {
			return
		}
		head := data[:end]
		var h Head
		if !ParseHead(head, &h) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("taken by the fast path, refused by net/http (%v):\n%q", err, head)
		}
		if req.Method != string(h.Method) || req.RequestURI != string(h.Target) || req.Host != string(h.Host) {
			t.Fatalf("net/http reads %s %s Host %q, the fast path %s %s Host %q:\n%q", req.Method, req.RequestURI, req.Host, h.Method, h.Target, h.Host, head)
		}
		chunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
		if chunked != h.Chunked || (!h.Chunked && req.ContentLength != max(h.ContentLength, 0)) {
			t.Fatalf("net/http frames the body as chunked=%v length=%d, the fast path chunked=%v length=%d:\n%q", chunked, req.ContentLength, h.Chunked, h.ContentLength, head)
		}
		if req.Close != h.CloseConn {
			t.Fatalf("net/http close=%v, the fast path %v:\n%q", req.Close, h.CloseConn, head)
		}
		for _, fl := range h.Fields {
			name := http.CanonicalHeaderKey(string(fl.Name))
			if name == "Host" || name == "Transfer-Encoding" || name == "Content-Length" {
				continue // net/http moves these out of Header
			}
			if !containsString(req.Header.Values(name), string(fl.Value)) {
				t.Fatalf("field %s: %q not among net/http's values %q:\n%q", name, fl.Value, req.Header.Values(name), head)
			}
		}
		var fr Framing
		fr.Feed(head)
		if v, ok := fr.Next(); !ok || v.Bad {
			t.Fatalf("taken by the fast path, judged bad by the framing guard:\n%q", head)
		}
	})
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
