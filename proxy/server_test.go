package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// serveProxy is startServer without the automatic Shutdown: these tests
// shut down themselves. It returns the address, the server and Serve's
// result.
func serveProxy(t *testing.T, e engine, tbl *route.Table) (string, *Server, chan error) {
	t.Helper()
	h := New(Options{})
	h.Swap(tbl)
	t.Cleanup(h.CloseIdleConnections)
	ln := listen(t)
	s := NewServer(h, ServerOptions{})
	t.Cleanup(func() { _ = s.Close() })
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	return ln.Addr().String(), s, served
}

// waitRefused waits until addr refuses connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections during shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShutdownLetsInFlightRequestFinish(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		arrived := make(chan struct{})
		release := make(chan struct{})
		b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-release
			fmt.Fprint(w, "finished")
		})
		addr, s, served := serveProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("slow", "", b))}))

		c := rawConn(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(testTimeout):
			t.Fatal("request never reached the backend")
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shutdown := make(chan error, 1)
		go func() { shutdown <- s.Shutdown(ctx) }()

		waitRefused(t, addr) // new connections are refused at once
		select {
		case err := <-shutdown:
			t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
		default:
		}
		close(release)
		resps := readResponses(t, newReader(c), 1)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusOK || resps[0].body != "finished" || !resps[0].Close {
			t.Fatalf("in-flight request: %v, want 200 finished with Connection: close", resps)
		}
		if err := <-shutdown; err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve = %v, want nil after Shutdown", err)
		}
	})
}

func TestShutdownClosesHijackedConnectionsAfterGrace(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := wsBackend(t)
		addr, s, served := serveProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("ws", "", b))}))
		c, br := dialWebSocket(t, addr)
		if s.hijackedCount() != 1 {
			t.Fatalf("%d hijacked connections tracked, want 1", s.hijackedCount())
		}

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := s.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the grace period's DeadlineExceeded", err)
		}
		// The tunnel was cut: the client reads EOF instead of hanging forever.
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := readFrame(br); !errors.Is(err, io.EOF) {
			t.Errorf("read from the tunnel after shutdown = %v, want EOF", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
}

func TestShutdownWaitsForHijackedConnections(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := wsBackend(t)
		addr, s, _ := serveProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("ws", "", b))}))
		c, br := dialWebSocket(t, addr)

		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shutdown := make(chan error, 1)
		go func() { shutdown <- s.Shutdown(ctx) }()
		waitRefused(t, addr)
		// The tunnel still works during the grace period...
		if _, err := c.Write(frame([]byte("still here"), true)); err != nil {
			t.Fatal(err)
		}
		if got, err := readFrame(br); err != nil || string(got) != "still here" {
			t.Fatalf("echo during shutdown = %q, %v", got, err)
		}
		select {
		case err := <-shutdown:
			t.Fatalf("Shutdown returned (%v) while a tunnel was open", err)
		default:
		}
		// ...and Shutdown returns once the client ends it.
		c.Close()
		select {
		case err := <-shutdown:
			if err != nil {
				t.Errorf("Shutdown = %v, want nil", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("Shutdown did not return after the tunnel closed")
		}
	})
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	s := NewServer(New(Options{}), ServerOptions{})
	if err := s.ListenAndServe("127.0.0.1:-1"); err == nil {
		t.Error("ListenAndServe on a bad address returned nil")
	}
	// A free port, then serve on it.
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe(addr) }()
	c := newClient(t)
	deadline := time.Now().Add(testTimeout)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if err := <-served; err != nil {
		t.Errorf("ListenAndServe = %v, want nil after Shutdown", err)
	}
}
