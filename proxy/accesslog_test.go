package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
)

// syncBuffer is an access-log Output the test can read while the writer
// goroutine writes.
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

// lines decodes the JSON lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// serveUntilDone serves h on a Server and returns its address and a stop
// function that shuts the server down: after stop, every request's
// handler has returned, so its access-log record is queued.
func serveUntilDone(t *testing.T, e engine, h *Handler) (string, func()) {
	t.Helper()
	ln := listen(t)
	s := NewServer(h, e.opts(ServerOptions{}))
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func closeLog(t *testing.T, a *observe.AccessLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		var out syncBuffer
		al := observe.NewAccessLog(observe.AccessLogOptions{Output: &out, Sample: 1})
		api := newBackend(t, "api", nil)
		h := New(Options{AccessLog: al})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("shop.example.com", shopRoute("/api", backendOf("api", "", api)))}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, stop := serveUntilDone(t, e, h)
		c := newClient(t)

		before := time.Now()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/api/items?token=secret", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shop.example.com"
		req.Header.Set(pipeline.HeaderRequestID, "line-test-1")
		resp, body := do(t, c, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if resp, _ := get(t, c, addr, "nowhere.test", "/x"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		after := time.Now()
		stop()
		closeLog(t, al)

		lines := out.lines(t)
		if len(lines) != 2 {
			t.Fatalf("%d lines, want 2:\n%s", len(lines), out.String())
		}
		checkServedLine(t, lines[0], api.addr(), len(body), before, after)
		checkNotFoundLine(t, lines[1])
	})
}

// checkServedLine checks the access log line of the request TestAccessLogLine
// sends to the api backend, made between before and after.
func checkServedLine(t *testing.T, line map[string]any, upstream string, bytesOut int, before, after time.Time) {
	t.Helper()
	wantKeys := []string{"bytes_in", "bytes_out", "client", "duration", "host", "ingress", "method", "namespace", "path",
		"protocol", "request_id", "service", "status", "time", "upstream", "upstream_duration"}
	var keys []string
	for k := range line {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("fields %q, want %q", keys, wantKeys)
	}
	for field, want := range map[string]any{
		"request_id": "line-test-1",
		"client":     "127.0.0.1",
		"method":     "POST",
		"host":       "shop.example.com",
		"path":       "/api/items", // never the query: it may carry secrets
		"protocol":   "HTTP/1.1",
		"status":     float64(200),
		"bytes_in":   float64(len("hello")),
		"bytes_out":  float64(bytesOut),
		"upstream":   upstream,
		"namespace":  "ns",
		"ingress":    "shop",
		"service":    "api",
	} {
		if line[field] != want {
			t.Errorf("%s = %#v, want %#v", field, line[field], want)
		}
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", line["time"].(string))
	if err != nil || ts.Before(before.Truncate(time.Millisecond)) || ts.After(after) {
		t.Errorf("time = %v (%v), want between %v and %v", line["time"], err, before, after)
	}
	d, _ := line["duration"].(float64)
	ud, _ := line["upstream_duration"].(float64)
	if d <= 0 || d > after.Sub(before).Seconds() || ud <= 0 || ud > d {
		t.Errorf("duration %v, upstream_duration %v: want 0 < upstream_duration <= duration <= %v", line["duration"], line["upstream_duration"], after.Sub(before).Seconds())
	}
}

// checkNotFoundLine checks the access log line of a request for a host no
// route serves.
func checkNotFoundLine(t *testing.T, notFound map[string]any) {
	t.Helper()
	for field, want := range map[string]any{
		"status": float64(404), "host": "nowhere.test", "path": "/x", "upstream": "", "upstream_duration": float64(0),
		"namespace": "", "ingress": "", "service": "", "bytes_out": float64(len(pipeline.ErrorBody(http.StatusNotFound))),
	} {
		if notFound[field] != want {
			t.Errorf("404 line: %s = %#v, want %#v", field, notFound[field], want)
		}
	}
	if id, _ := notFound["request_id"].(string); !generatedID.MatchString(id) {
		t.Errorf("404 line: request_id = %q, want a generated one", id)
	}
}

// blockingWriter is a sink that blocks every write until released.
type blockingWriter struct {
	entered chan struct{} // closed when the first Write starts
	release chan struct{}
	once    sync.Once
	out     syncBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func TestAccessLogBlockedSinkNeverBlocksRequests(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		sink := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
		released := sync.OnceFunc(func() { close(sink.release) })
		t.Cleanup(released)
		reg := prometheus.NewRegistry()
		const buffer = 4
		al := observe.NewAccessLog(observe.AccessLogOptions{Output: sink, Sample: 1, Buffer: buffer, Registerer: reg})
		b := newBackend(t, "b", nil)
		h := New(Options{AccessLog: al})
		h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}))
		t.Cleanup(h.CloseIdleConnections)
		addr, stop := serveUntilDone(t, e, h)
		c := newClient(t) // gives up after testTimeout: a blocked request fails the test

		if resp, _ := get(t, c, addr, "app.test", "/first"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		select {
		case <-sink.entered: // the writer holds the first line and is stuck
		case <-time.After(testTimeout):
			t.Fatal("the writer never wrote")
		}
		const more = 20
		for range more {
			if resp, _ := get(t, c, addr, "app.test", "/more"); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		stop() // every handler has returned: its line is queued or dropped
		if got, want := float64(al.Dropped()), float64(more-buffer); got != want {
			t.Errorf("dropped = %g, want %g (%d requests while the sink was blocked, %d queued)", got, want, more, buffer)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP postern_proxy_access_log_dropped_total Access-log lines dropped because the writer fell behind (a slow or blocked output).
# TYPE postern_proxy_access_log_dropped_total counter
postern_proxy_access_log_dropped_total 16
`), "postern_proxy_access_log_dropped_total"); err != nil {
			t.Error(err)
		}

		// Close does not hang on a blocked sink either.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := al.Close(ctx); err == nil {
			t.Error("Close returned nil with the sink blocked and lines queued")
		}
		// Once the sink works, Close writes what was queued.
		released()
		closeLog(t, al)
		if n := len(sink.out.lines(t)); n != 1+buffer {
			t.Errorf("%d lines written after the sink was released, want %d", n, 1+buffer)
		}
	})
}

func TestAccessLogSampling(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		var out syncBuffer
		al := observe.NewAccessLog(observe.AccessLogOptions{Output: &out, Sample: 0})
		b := newBackend(t, "b", nil)
		h := New(Options{AccessLog: al})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test",
			prefix("/", backendOf("b", "", b)),
			prefix("/down", backendOf("down", "")),
		)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		addr, stop := serveUntilDone(t, e, h)
		c := newClient(t)
		for _, path := range []string{"/", "/a", "/down", "/b", "/down/x"} {
			get(t, c, addr, "app.test", path)
		}
		stop()
		closeLog(t, al)
		lines := out.lines(t)
		if len(lines) != 2 {
			t.Fatalf("%d lines with --access-log-sample 0, want the 2 errors:\n%s", len(lines), out.String())
		}
		for _, l := range lines {
			if l["status"] != float64(http.StatusServiceUnavailable) {
				t.Errorf("logged %v, want only the 503s", l)
			}
		}
	})
}
