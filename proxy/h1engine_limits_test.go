package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// TestH1EngineEarlyAnswer checks that an endpoint's answer sent before it
// stopped reading a large body (a 413 from the application, say) reaches
// the client, as through net/http's Transport, and not a 502.
func TestH1EngineEarlyAnswer(t *testing.T) {
	t.Parallel()
	early := oneShotEndpoint(t, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n")
	be := &route.Backend{Key: "ns/early:80", Endpoints: []route.Endpoint{{Address: early}}}
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", be))}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, s := startFastServer(t, h, ServerOptions{})

	const size = 32 << 20 // more than the socket buffers hold
	c := rawConn(t, addr)
	defer c.Close()
	go upload(c, size)
	resps := readResponses(t, bufio.NewReader(c), 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestEntityTooLarge || resps[0].body != "big\n" {
		t.Fatalf("%+v, want the endpoint's 413", resps)
	}
	if !resps[0].Close {
		t.Error("the answer does not close the connection, whose body was not read")
	}
	if s.fast.served.Load() != 1 {
		t.Errorf("the engine served %d, want 1", s.fast.served.Load())
	}
}

// TestH1EngineStalledUpload checks that an endpoint that stops reading a
// request body, and answers nothing, gets the request ended within the
// backend's read timeout (504) instead of holding it for ever.
func TestH1EngineStalledUpload(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stall := rawEndpoint(t, func(net.Conn) { <-release }) // reads nothing, answers nothing
	be := &route.Backend{Key: "ns/stall:80", Endpoints: []route.Endpoint{{Address: stall}}}
	rt := prefix("/", be)
	rt.Policy = &route.Policy{ReadTimeout: route.Duration(200 * time.Millisecond)}
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", rt)}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startFastServer(t, h, ServerOptions{})

	const size = 32 << 20
	c := rawConn(t, addr)
	defer c.Close()
	go upload(c, size)
	resps := readResponses(t, bufio.NewReader(c), 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("%+v, want 504", resps)
	}
}

// TestH1EngineSendTimeout checks that proxy-send-timeout bounds each write
// of the body to an endpoint that stops reading it (504), however long
// the route's read timeout: a minute here, longer than the test waits.
func TestH1EngineSendTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stall := rawEndpoint(t, func(net.Conn) { <-release })
	be := &route.Backend{Key: "ns/stall:80", Endpoints: []route.Endpoint{{Address: stall}}}
	rt := prefix("/", be)
	rt.Policy = &route.Policy{ReadTimeout: route.Duration(time.Minute), SendTimeout: route.Duration(200 * time.Millisecond)}
	h := New(Options{})
	h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", rt)}, nil))
	t.Cleanup(h.CloseIdleConnections)
	addr, _ := startFastServer(t, h, ServerOptions{})

	c := rawConn(t, addr)
	defer c.Close()
	go upload(c, 32<<20)
	resps := readResponses(t, bufio.NewReader(c), 1)
	if len(resps) != 1 || resps[0].StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("%+v, want 504", resps)
	}
}

// flakyListener fails its first n Accepts with an error that says to try
// again, as a listener out of file descriptors does.
type flakyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return l.Listener.Accept()
}

// TestH1EngineAcceptRetries checks that the fast path's listener waits
// out accept errors that say to try again (EMFILE) instead of ending the
// listener, as net/http and the TLS listener do.
func TestH1EngineAcceptRetries(t *testing.T) {
	t.Parallel()
	b := newBackend(t, "b", nil)
	h := New(Options{})
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
	t.Cleanup(h.CloseIdleConnections)
	ln := &flakyListener{Listener: listen(t)}
	ln.n.Store(3)
	s := NewServer(h, ServerOptions{})
	runServer(t, s, func() error { return s.Serve(ln) })
	resps, c, _ := exchange(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	c.Close()
	if len(resps) != 1 || resps[0].StatusCode != http.StatusOK {
		t.Fatalf("%+v, want 200 after the accept errors", resps)
	}
	if s.fast.served.Load() != 1 {
		t.Errorf("the engine served %d, want 1", s.fast.served.Load())
	}
}

// upload sends a POST to app.test with a body of size zero bytes, until
// the proxy closes the connection (after an answer) or all is sent.
func upload(c net.Conn, size int) {
	_, _ = fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n", size)
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < size; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}
