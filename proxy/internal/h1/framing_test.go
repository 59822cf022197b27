package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// judgeAll feeds input to a new parser in chunks of the given sizes
// (cycled; nil means all at once) and returns its verdicts, "ok" or "bad"
// with the request line they belong to, and whether it ended broken.
func judgeAll(input []byte, sizes []int) (*Framing, []Verdict) {
	var f Framing
	for i := 0; len(input) > 0; i++ {
		n := len(input)
		if len(sizes) > 0 {
			n = min(n, max(1, sizes[i%len(sizes)]))
		}
		f.Feed(input[:n])
		input = input[n:]
	}
	var vs []Verdict
	for {
		v, ok := f.Next()
		if !ok {
			return &f, vs
		}
		vs = append(vs, v)
	}
}

func describe(vs []Verdict, lines ...string) string {
	var out []string
	for _, v := range vs {
		s := "ok"
		if v.Bad {
			s = "bad"
		}
		for _, l := range lines {
			method, target, _ := strings.Cut(l, " ")
			if v.Line == RequestLineHash(method, target) {
				s += " " + l
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func TestFramingVerdicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		broken         bool
	}{
		{"one GET", "GET / HTTP/1.1\nHost: a\n\n", "ok GET /", false},
		{"pipelined", "GET /a HTTP/1.1\n\nGET /b HTTP/1.1\n\n", "ok GET /a, ok GET /b", false},
		{"content-length body", "POST /a HTTP/1.1\nContent-Length: 19\n\nGET /x HTTP/1.1\n\nGET /b HTTP/1.1\n\n", "ok POST /a, ok GET /b", false},
		{"chunked body", "POST /a HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nGET /\n0\n\nGET /b HTTP/1.1\n\n", "ok POST /a, ok GET /b", false},
		{"chunked with trailer", "POST /a HTTP/1.1\nTransfer-Encoding: chunked\n\n0\nX: y\n\nGET /b HTTP/1.1\n\n", "ok POST /a, ok GET /b", false},
		{"CL and TE", "POST /a HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked\n\n0\n\nGET /b HTTP/1.1\n\n", "bad POST /a", true},
		{"TE and CL, any case", "POST /a HTTP/1.1\ntransfer-encoding: CHUNKED\nCONTENT-LENGTH: 3\n\n", "bad POST /a", true},
		{"TE not chunked", "POST /a HTTP/1.1\nTransfer-Encoding: identity\n\n", "bad POST /a", true},
		{"TE twice", "POST /a HTTP/1.1\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n", "bad POST /a", true},
		{"TE with Unicode K", "POST /a HTTP/1.1\nTransfer-Encoding: chun\u212aed\n\n", "bad POST /a", true},
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\nTransfer-Encoding: chunked\n\n", "bad POST /a", true},
		{"CL differs", "POST /a HTTP/1.1\nContent-Length: 1\nContent-Length: 2\n\n", "bad POST /a", true},
		{"CL equal twice", "POST /a HTTP/1.1\nContent-Length: 1\nContent-Length:  1 \n\nxGET /b HTTP/1.1\n\n", "ok POST /a, ok GET /b", false},
		{"CL not a number", "POST /a HTTP/1.1\nContent-Length: 0x10\n\n", "bad POST /a", true},
		{"CL empty", "POST /a HTTP/1.1\nContent-Length:\n\n", "bad POST /a", true},
		{"CL overflow", "POST /a HTTP/1.1\nContent-Length: 9223372036854775808\n\n", "bad POST /a", true},
		{"obs-fold", "GET /a HTTP/1.1\nX: 1\n 2\n\n", "bad GET /a", true},
		{"space before first field", "GET /a HTTP/1.1\n Host: a\n\n", "bad GET /a", true},
		{"bad version", "GET /a HTTP/2.0\n\n", "bad GET /a", true},
		{"no version", "GET /a\n\n", "bad", true},
		{"empty request line", "\r\nGET /a HTTP/1.1\n\n", "bad", true},
		{"target with spaces", "GET /a b HTTP/1.1\n\n", "bad GET /a", true},
		{"long unrelated field", "GET /a HTTP/1.1\nCookie: " + strings.Repeat("c", 5000) + "\n\nGET /b HTTP/1.1\n\n", "ok GET /a, ok GET /b", false},
		{"long TE field", "POST /a HTTP/1.1\nTransfer-Encoding: chunked" + strings.Repeat(" ", 300) + "x\n\n", "bad POST /a", true},
		{"chunk size bare LF", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a", true},
		{"chunk data without CRLF", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a", true},
		{"chunk size too long", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n0\r\n\r\n", "ok POST /a", true},
		{"chunk size with space", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\nx\r\n0\r\n\r\n", "ok POST /a", true},
		{"trailer bare LF", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a", true},
		{"chunk extension quoted", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"b;c\\\"\";d\r\nx\r\n0\r\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a, ok GET /b", false},
		{"chunk extension quote left open", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"b\r\nx\r\n0\r\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a", true},
		{"chunk extension control character", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\x01\r\nx\r\n0\r\n\r\nGET /b HTTP/1.1\n\n", "ok POST /a", true},
		{"CL with a stray CR", "POST /a HTTP/1.1\r\nContent-Length: 1\r\r\n\r\nxGET /b HTTP/1.1\r\n\r\n", "ok POST /a, ok GET /b", false},
		{"CL after a stray CR", "POST /a HTTP/1.1\r\nContent-Length:\r1\r\n\r\nxGET /b HTTP/1.1\r\n\r\n", "ok POST /a, ok GET /b", false},
		{"trailer with a stray CR", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\r\n\r\nGET /b HTTP/1.1\r\n\r\n", "ok POST /a", true},
		{"trailer with OWS", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX:\t y \r\n\r\nGET /b HTTP/1.1\r\n\r\n", "ok POST /a, ok GET /b", false},
		{"trailer name not a token", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX Y: z\r\n\r\nGET /b HTTP/1.1\r\n\r\n", "ok POST /a", true},
		{"trailer without colon", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nGET /b HTTP/1.1\r\n\r\n", "ok POST /a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			if !strings.Contains(in, "\r\n") {
				in = crlf(in)
			}
			lines := []string{"GET /", "GET /a", "GET /b", "POST /a"}
			for _, sizes := range [][]int{nil, {1}, {3, 7}} {
				f, vs := judgeAll([]byte(in), sizes)
				if got := describe(vs, lines...); got != tt.want {
					t.Errorf("chunks %v: verdicts %q, want %q", sizes, got, tt.want)
				}
				if got := f.state == stBroken; got != tt.broken {
					t.Errorf("chunks %v: broken = %v, want %v", sizes, got, tt.broken)
				}
			}
		})
	}
}

// TestFramingBodyBroken: a malformed body is blamed on its own request,
// not on the one before it, and a bad header section on no body.
func TestFramingBodyBroken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want uint64 // the request whose body broke; 0 for none
	}{
		{"second body", "POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nxPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;\x00\r\nx\r\n0\r\n\r\n", 2},
		{"first body", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /b HTTP/1.1\r\n\r\n", 1},
		{"bad header after a good body", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0},
		{"sound", "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\nx\r\n0\r\n\r\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f Framing
			f.Feed([]byte(tt.in))
			for seq := uint64(1); seq <= 2; seq++ {
				f.Next()
				if got := f.BodyBroken(seq); got != (seq == tt.want) {
					t.Errorf("BodyBroken(%d) = %v, want %v", seq, got, seq == tt.want)
				}
			}
		})
	}
}

func TestFramingQueueIsBounded(t *testing.T) {
	t.Parallel()
	var f Framing
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	for range 2 * maxQueued {
		f.Feed(req)
	}
	if n := len(f.queue) - f.head; n > maxQueued || f.state != stBroken {
		t.Errorf("%d verdicts queued, broken %v; want at most %d and broken", n, f.state == stBroken, maxQueued)
	}
}

func TestFramingDoesNotAllocate(t *testing.T) {
	var f Framing
	reqs := []byte(crlf("POST /upload?id=1 HTTP/1.1\nHost: app.example.com\nContent-Length: 5\nUser-Agent: test\n\nhello" +
		"POST /c HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n"))
	f.Feed(reqs) // the first requests size the buffers
	f.Next()
	f.Next()
	allocs := testing.AllocsPerRun(100, func() {
		f.Feed(reqs)
		f.Next()
		f.Next()
	})
	if allocs != 0 {
		t.Errorf("feeding a keep-alive connection allocates %.1f times per pair of requests, want 0", allocs)
	}
}

// BenchmarkFraming measures the framing parser on a keep-alive stream of
// typical requests: the cost the guard adds to every byte read.
func BenchmarkFraming(b *testing.B) {
	reqs := []byte(crlf("GET /api/v1/users?id=42 HTTP/1.1\nHost: app.example.com\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\n" +
		"Accept: text/html,application/xhtml+xml\nAccept-Language: en-US,en;q=0.5\nAccept-Encoding: gzip, deflate, br\n" +
		"Cookie: session=" + strings.Repeat("abcdef0123", 20) + "\n\n" +
		"POST /upload HTTP/1.1\nHost: app.example.com\nContent-Type: application/json\nContent-Length: 64\n\n" +
		strings.Repeat("x", 64)))
	var f Framing
	b.SetBytes(int64(len(reqs)))
	b.ReportAllocs()
	for b.Loop() {
		f.Feed(reqs)
		f.Next()
		f.Next()
	}
}

// goRequests reads data the way Go's server does, request after request
// with each body read to its end, and returns the request lines it
// accepted. bodyErr reports that reading the last one's body failed.
func goRequests(data []byte) (lines []string, bodyErr bool) {
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return lines, false
		}
		if req.ProtoMajor != 1 {
			return lines, false
		}
		lines = append(lines, req.Method+" "+req.RequestURI)
		_, err = io.Copy(io.Discard, req.Body)
		if err != nil {
			return lines, true
		}
	}
}

// FuzzFraming checks that the framing parser never panics, keeps its
// buffers bounded, judges the same however the input is split into reads,
// and never disagrees with Go's own request parser: each request it judges
// sound must be the request Go reads at that position.
func FuzzFraming(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\n\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 01\r\n\r\nxGET / HTTP/1.1\r\n\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		whole, want := judgeAll(data, nil)
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		sizes := make([]int, 8)
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(64)
		}
		split, got := judgeAll(data, sizes)
		if fmt.Sprint(got) != fmt.Sprint(want) || whole.state != split.state {
			t.Fatalf("split into %v: verdicts %v (state %d), whole: %v (state %d)", sizes, got, split.state, want, whole.state)
		}
		if c := cap(whole.line); c > maxTrailer+maxChunkLine {
			t.Fatalf("line buffer grew to %d bytes", c)
		}

		lines, bodyErr := goRequests(data)
		for i, v := range want {
			if v.Bad {
				break // this and later requests are refused
			}
			if i >= len(lines) {
				// Go failed on this request: it answers the error
				// itself and closes, so the verdict is never used. But
				// a request whose body Go could not read must not be
				// followed by one judged sound.
				if bodyErr && i == len(lines) && i > 0 {
					t.Fatalf("verdict %d is sound after Go failed reading the body of request %d (%q)", i, i-1, lines[i-1])
				}
				break
			}
			method, target, _ := strings.Cut(lines[i], " ")
			if v.Line != RequestLineHash(method, target) {
				t.Fatalf("verdict %d is sound but for another request line than Go's %q", i, lines[i])
			}
		}
	})
}

// crlf turns the LF line ends of a test request into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
