package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestH1CopyChunked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		payload  int64
		err      error
		rest     string // what src still holds after the body
	}{
		{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", 11, nil, "NEXT"},
		{"extensions and trailer", "5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", 5, nil, ""},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", 10, nil, ""},
		{"no crlf after data", "5\r\nhelloX\r\n0\r\n\r\n", 5, errChunked, ""},
		{"bad size", "z\r\nhello\r\n0\r\n\r\n", 0, errChunked, ""},
		{"negative size", "-5\r\nhello\r\n0\r\n\r\n", 0, errChunked, ""},
		{"huge size", "1000000000000000\r\n", 0, errChunked, ""},
		{"bare lf", "5\nhello\r\n0\r\n\r\n", 0, errChunked, ""},
		{"bad extension", "5;\"x\r\nhello\r\n0\r\n\r\n", 0, errChunked, ""},
		// RFC 9112's BWS before ";" is refused, as Go's reader and Framing refuse it.
		{"space before extension", "0 ;0\r\n\r\n", 0, errChunked, ""},
		{"trailing space", "5 \r\nhello\r\n0\t\r\n\r\n", 5, nil, ""},
		{"cut short", "5\r\nhel", 3, io.ErrUnexpectedEOF, ""},
		{"no last chunk", "5\r\nhello\r\n", 5, io.ErrUnexpectedEOF, ""},
		{"folded trailer", "0\r\nX: a\r\n b\r\n\r\n", 0, errChunked, ""},
	}
	for _, tc := range tests {
		src := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
		var out bytes.Buffer
		dst := bufio.NewWriter(&out)
		n, err := CopyChunked(dst, src, 0)
		if !errors.Is(err, tc.err) || n != tc.payload {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, n, err, tc.payload, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		_ = dst.Flush()
		rest, _ := io.ReadAll(src)
		if body := strings.TrimSuffix(tc.in, tc.rest); out.String() != body || string(rest) != tc.rest {
			t.Errorf("%s: relayed %q (left %q), want %q (left %q)", tc.name, out.String(), rest, body, tc.rest)
		}
	}
}

// A stream is flushed to the client as its chunks arrive, not when the
// body ends.
func TestH1CopyChunkedFlushes(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	src := bufio.NewReader(pr)
	var out syncBuffer
	dst := bufio.NewWriter(&out)
	done := make(chan error, 1)
	go func() {
		_, err := CopyChunked(dst, src, 0)
		done <- err
	}()
	_, _ = io.WriteString(pw, "5\r\nfirst\r\n")
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != "5\r\nfirst\r\n" {
		select {
		case err := <-done:
			t.Fatalf("the copy ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first chunk was not flushed while the body goes on (client got %q)", out.String())
		}
		waitABit()
	}
	_, _ = io.WriteString(pw, "0\r\n\r\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
}

// FuzzH1Chunked checks CopyChunked against net/http's chunked reader:
// when the copy succeeds, net/http decodes the input and the copy to the
// same payload, and the copy is the input's body byte for byte.
func FuzzH1Chunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"1\r\na\r\n1\r\nb\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bufio.NewReaderSize(bytes.NewReader(data), 64)
		var out bytes.Buffer
		dst := bufio.NewWriter(&out)
		n, err := CopyChunked(dst, src, 0)
		if err != nil {
			return
		}
		_ = dst.Flush()
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("the copy is not the input's prefix:\n%q\n%q", out.Bytes(), data)
		}
		decode := func(body []byte) ([]byte, error) {
			head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(body))), nil)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			return io.ReadAll(resp.Body)
		}
		want, err := decode(out.Bytes())
		if err != nil {
			t.Fatalf("relayed, but net/http cannot decode it (%v):\n%q", err, out.Bytes())
		}
		if int64(len(want)) != n {
			t.Fatalf("payload: net/http %d bytes, the copy counted %d:\n%q", len(want), n, out.Bytes())
		}
	})
}

// waitABit yields to the copying goroutine between checks.
func waitABit() { time.Sleep(time.Millisecond) }

// syncBuffer is a bytes.Buffer a test reads while another goroutine
// writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A limit stops the copy before the chunk that would pass it, so that no
// byte past the limit is relayed; a body within it is relayed whole.
func TestH1CopyChunkedLimit(t *testing.T) {
	body := "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	for _, tc := range []struct {
		limit   int64
		wantErr error
		wantN   int64
		wantOut string
	}{
		{limit: 0, wantN: 11, wantOut: body},
		{limit: 11, wantN: 11, wantOut: body},
		{limit: 10, wantErr: ErrTooLarge, wantN: 5, wantOut: "5\r\nhello\r\n"},
		{limit: 4, wantErr: ErrTooLarge, wantN: 0, wantOut: ""},
	} {
		var out bytes.Buffer
		dst := bufio.NewWriter(&out)
		n, err := CopyChunked(dst, bufio.NewReader(strings.NewReader(body)), tc.limit)
		_ = dst.Flush()
		if !errors.Is(err, tc.wantErr) || n != tc.wantN || out.String() != tc.wantOut {
			t.Errorf("limit %d: n=%d err=%v out=%q; want n=%d err=%v out=%q", tc.limit, n, err, out.String(), tc.wantN, tc.wantErr, tc.wantOut)
		}
	}
}
