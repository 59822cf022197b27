package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// wsAccept computes Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsBackend answers a WebSocket handshake and echoes text frames until the
// connection closes. It is just enough RFC 6455 for a test: short frames
// only.
func wsBackend(t *testing.T) *testBackend {
	return newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "not a websocket handshake", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		if brw.Flush() != nil {
			return
		}
		for {
			payload, err := readFrame(brw.Reader)
			if err != nil {
				return
			}
			if _, err := c.Write(frame(payload, false)); err != nil {
				return
			}
		}
	})
}

// frame encodes a final text frame of fewer than 126 bytes, masked as a
// client must (RFC 6455 §5.3).
func frame(payload []byte, masked bool) []byte {
	b := []byte{0x81, byte(len(payload))}
	if !masked {
		return append(b, payload...)
	}
	b[1] |= 0x80
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr[0] != 0x81 || hdr[1]&0x7f >= 126 {
		return nil, fmt.Errorf("unexpected frame header %x", hdr)
	}
	n := int(hdr[1] & 0x7f)
	var mask [4]byte
	if hdr[1]&0x80 != 0 {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return payload, nil
}

// dialWebSocket does the client side of the handshake through addr.
func dialWebSocket(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := rawConn(t, addr)
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	resp.Body.Close() // a 101 has no body; the tunnel's bytes follow in br
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake = %d %v, want 101 with accept %s", resp.StatusCode, resp.Header, wsAccept(key))
	}
	return c, br
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := wsBackend(t)
		addr, h := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("ws", "", b))}), Options{})
		c, br := dialWebSocket(t, addr)
		for _, msg := range []string{"hello", "again"} {
			if _, err := c.Write(frame([]byte(msg), true)); err != nil {
				t.Fatal(err)
			}
			got, err := readFrame(br)
			if err != nil || string(got) != msg {
				t.Fatalf("echo = %q, %v; want %q", got, err, msg)
			}
		}
		// The tunnel counts as a request in flight to its endpoint.
		if n := h.cluster.InFlight().Count(b.addr()); n != 1 {
			t.Errorf("in flight during the tunnel = %d, want 1", n)
		}
	})
}

func TestServerSentEventsStream(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		release := make(chan struct{})
		b := newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: one\n\n")
			_ = http.NewResponseController(w).Flush()
			select { // the stream stays open until the client has the event
			case <-release:
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "data: two\n\n")
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("sse", "", b))}), Options{})
		firstEventBeforeEnd(t, addr, "/events", "data: one", release)
	})
}

func TestChunkedResponseStreams(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		release := make(chan struct{})
		b := newBackend(t, "chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			fmt.Fprint(w, "{\"n\":1}\n")
			_ = http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "{\"n\":2}\n")
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("chunked", "", b))}), Options{})
		firstEventBeforeEnd(t, addr, "/stream", `{"n":1}`, release)
	})
}

// firstEventBeforeEnd reads the first line of a streamed response while
// the backend is still holding the response open, then lets it finish. If
// the proxy buffered the response the first line would only come after the
// backend finished, which it never does unprompted: the read times out.
func firstEventBeforeEnd(t *testing.T, addr, path, want string, release chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	req.Host = "app.test"
	resp, err := newClient(t).Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Errorf("ContentLength = %d, want -1 (streamed)", resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	close(release)
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("first line = %q, %v; want %q before the backend finished", line, err, want)
	}
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) == 0 {
		t.Errorf("rest of the stream = %q, %v", rest, err)
	}
}

func TestRequestBodyStreams(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		firstPart := make(chan string, 1)
		b := newBackend(t, "upload", func(w http.ResponseWriter, r *http.Request) {
			br := bufio.NewReader(r.Body)
			line, _ := br.ReadString('\n')
			firstPart <- line
			rest, _ := io.ReadAll(br)
			fmt.Fprintf(w, "%d %s%s", len(r.TransferEncoding), line, rest)
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("upload", "", b))}), Options{})

		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/upload", pr)
		req.Host = "app.test"
		req.ContentLength = -1 // chunked
		type result struct {
			status int
			body   string
			err    error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := newClient(t).Do(req)
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			res <- result{resp.StatusCode, string(body), err}
		}()
		if _, err := io.WriteString(pw, "part one\n"); err != nil {
			t.Fatal(err)
		}
		// The backend sees the first part while the client still holds the
		// rest: the proxy streams the body rather than buffering it.
		select {
		case got := <-firstPart:
			if got != "part one\n" {
				t.Errorf("backend read %q first", got)
			}
		case <-time.After(testTimeout):
			pw.CloseWithError(errors.New("test timed out"))
			t.Fatal("the backend did not get the first part of the body before its end")
		}
		_, _ = io.WriteString(pw, "part two\n")
		pw.Close()
		r := <-res
		if r.err != nil || r.status != http.StatusOK || r.body != "1 part one\npart two\n" {
			t.Errorf("response = %d %q %v, want 200 with the whole body, chunked", r.status, r.body, r.err)
		}
	})
}
