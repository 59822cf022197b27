package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// Request-size limits (431) are tested in smuggle_test.go
// (TestOversizeHeaders).

// endedByServer reads c until it ends and reports whether the server
// ended it (EOF or a reset) without sending anything, rather than the
// test's own deadline.
func endedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := io.Copy(io.Discard, c)
	if n > 0 {
		t.Errorf("the server sent %d bytes before closing", n)
	}
	return err == nil || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// TestSlowlorisCutOff: a client trickling header fields, each well within
// any per-read timeout, is cut off when the header section as a whole
// takes longer than ReadHeaderTimeout.
func TestSlowlorisCutOff(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		addr, b := smuggleProxy(t, e, ServerOptions{ReadHeaderTimeout: 200 * time.Millisecond})
		c := rawConn(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		trickled := make(chan struct{})
		go func() {
			defer close(trickled)
			// For as long as the test may wait: without the timeout the
			// header section never ends and endedByServer fails.
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := io.WriteString(c, "X-Trickle: 1\r\n"); err != nil {
						return
					}
				}
			}
		}()
		ended := endedByServer(t, c)
		close(stop)
		<-trickled
		if !ended {
			t.Error("a client trickling its header fields was not cut off")
		}
		if b.hits.Load() != 0 {
			t.Error("the backend was reached")
		}
	})
}

// TestIdleKeepAliveClosed: a keep-alive connection with no next request
// is closed after IdleTimeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		addr, _ := smuggleProxy(t, e, ServerOptions{IdleTimeout: 200 * time.Millisecond, ReadHeaderTimeout: testTimeout})
		resps, c, br := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || resps[0].Close {
			t.Fatalf("responses %v, want one 200 that keeps the connection", resps)
		}
		if !closedByServer(c, br) {
			t.Error("an idle keep-alive connection was not closed")
		}
	})
}

// http2Settings reads the server's first frame on an h2 connection, which
// must be its SETTINGS (RFC 9113 §3.4), and returns the parameters.
func http2Settings(t *testing.T, addr string, base *tls.Config) map[uint16]uint32 {
	t.Helper()
	cfg := base.Clone()
	cfg.NextProtos = []string{"h2"}
	c := dialTLS(t, addr, cfg)
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	// The client preface and an empty SETTINGS frame.
	preface := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 0x4, 0, 0, 0, 0, 0)
	if _, err := c.Write(preface); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var hdr [9]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:]); typ != 0x4 || flags&0x1 != 0 || stream != 0 || length%6 != 0 {
		t.Fatalf("first frame: type %d flags %#x stream %d length %d, want a SETTINGS frame", typ, flags, stream, length)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	settings := make(map[uint16]uint32)
	for p := payload; len(p) >= 6; p = p[6:] {
		settings[binary.BigEndian.Uint16(p)] = binary.BigEndian.Uint32(p[2:])
	}
	return settings
}

func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	const settingsMaxConcurrentStreams = 0x3
	pki := newTestPKI(t, "default")
	for _, tt := range []struct {
		configured int
		want       uint32
	}{{0, 250}, {7, 7}} {
		ln := listen(t)
		s := NewServer(New(Options{}), ServerOptions{})
		done := make(chan error, 1)
		go func() {
			done <- s.ServeTLS(ln, TLSOptions{Config: pki.serverConfig(), MaxConcurrentStreams: tt.configured})
		}()
		settings := http2Settings(t, ln.Addr().String(), &tls.Config{RootCAs: pki.pool, ServerName: "default", MinVersion: tls.VersionTLS12})
		got, ok := settings[settingsMaxConcurrentStreams]
		if !ok || got != tt.want {
			t.Errorf("MaxConcurrentStreams %d: SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent %v), want %d", tt.configured, got, ok, tt.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
