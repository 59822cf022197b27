package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// peekServerName reads the server name of a ClientHello and every byte it
// read, for any client (SNI or none); bytes that are not a ClientHello
// come back as they were, to fail the usual handshake as before.
func TestPeekServerName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, sni string
		raw       string // sent instead of a ClientHello when set
		ok        bool
	}{
		{name: "SNI", sni: "pass.example.com", ok: true},
		{name: "no SNI", sni: "", ok: true},
		{name: "plain HTTP", raw: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		client, server := net.Pipe()
		got := make(chan []byte, 1)
		go func() {
			defer client.Close()
			if tc.raw != "" {
				_, _ = io.WriteString(client, tc.raw)
				got <- []byte(tc.raw)
				return
			}
			c := tls.Client(&teeConn{Conn: client, out: got}, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}) //nolint:gosec // never completes
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_ = c.HandshakeContext(t.Context())
		}()
		name, read, ok := peekServerName(server, 2*time.Second)
		server.Close()
		sent := <-got
		if ok != tc.ok || name != tc.sni {
			t.Errorf("%s: name %q ok %v, want %q %v", tc.name, name, ok, tc.sni, tc.ok)
		}
		if string(read) != string(sent[:min(len(sent), len(read))]) || len(read) == 0 {
			t.Errorf("%s: %d bytes read back, not what was sent (%d bytes)", tc.name, len(read), len(sent))
		}
	}
}

// teeConn hands its first write (the ClientHello) to out.
type teeConn struct {
	net.Conn
	out  chan []byte
	sent bool
}

func (c *teeConn) Write(p []byte) (int, error) {
	if !c.sent {
		c.sent = true
		c.out <- append([]byte(nil), p...)
	}
	return c.Conn.Write(p)
}
