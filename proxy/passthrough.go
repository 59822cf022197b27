package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// TLS passthrough (ingress-nginx's ssl-passthrough with
// --enable-ssl-passthrough): the HTTPS listener reads a connection's
// ClientHello before it terminates TLS; a server name whose host has
// route.VirtualHost.Passthrough is connected, unopened, to an endpoint of
// that host's backend (the ClientHello first, then both directions
// spliced), and no HTTP policy sees it. Every other connection is
// terminated as usual, the bytes read replayed to the handshake.

// maxHello bounds the bytes read while looking for the server name: a
// ClientHello fits in a few records.
const maxHello = 64 << 10

// errHelloRead stops the handshake that reads the ClientHello.
var errHelloRead = errors.New("client hello read")

// peekServerName reads c's ClientHello and returns its server name, and
// every byte read (to replay). ok is false when c does not start with a
// ClientHello Go can read; the bytes still go to the usual handshake,
// which then fails as it would have.
func peekServerName(c net.Conn, timeout time.Duration) (name string, read []byte, ok bool) {
	rec := &recordConn{Conn: c}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	srv := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name = h.ServerName
		return nil, errHelloRead
	}})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.HandshakeContext(ctx)
	return name, rec.buf, errors.Is(err, errHelloRead)
}

// recordConn keeps what is read from its Conn and writes nothing (the
// handshake that reads the ClientHello must not answer it).
type recordConn struct {
	net.Conn
	buf []byte
}

func (r *recordConn) Read(p []byte) (int, error) {
	if len(r.buf) >= maxHello {
		return 0, errors.New("client hello too long")
	}
	n, err := r.Conn.Read(p[:min(len(p), maxHello-len(r.buf))])
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recordConn) Write([]byte) (int, error) { return 0, errHelloRead }

// passthroughTarget returns the endpoint address the TLS connections for
// serverName go to unopened, "" when they are terminated.
func (s *Server) passthroughTarget(serverName string) (addr, backend string) {
	be := s.h.Table().Passthrough(serverName)
	if be == nil {
		return "", ""
	}
	ep := s.h.pipeline.Cluster().Pick(be, 0)
	if ep == nil {
		return "", be.Key
	}
	return ep.Address, be.Key
}

// splice connects in, whose ClientHello hello was read, to the endpoint
// addr, and copies both ways until either side is done. raw is closed at
// the end.
func (l *tlsListener) splice(in, raw net.Conn, hello []byte, addr, backend, serverName string) {
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	up, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", addr)
	cancel()
	if err != nil {
		l.metrics.Passthrough(false, 0, 0)
		if ce := l.log.Check(zap.WarnLevel, "ssl passthrough: cannot reach the endpoint"); ce != nil {
			ce.Write(zap.String("host", serverName), zap.String("backend", backend), zap.String("upstream", addr), zap.Error(err))
		}
		return
	}
	defer up.Close()
	if _, err := up.Write(hello); err != nil {
		l.metrics.Passthrough(false, 0, 0)
		return
	}
	var wg sync.WaitGroup
	var sent int64
	wg.Go(func() {
		sent, _ = io.Copy(up, in)
		closeWrite(up)
	})
	received, _ := io.Copy(in, up)
	closeWrite(in)
	wg.Wait()
	l.metrics.Passthrough(true, int64(len(hello))+sent, received)
}

// closeWrite ends the sending half of c when it has one (TCP), so that
// the other side sees the end of what this side had to say.
func closeWrite(c net.Conn) {
	type writeCloser interface{ CloseWrite() error }
	for {
		switch v := c.(type) {
		case writeCloser:
			_ = v.CloseWrite()
			return
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			_ = c.Close()
			return
		}
	}
}
