package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/route"
)

func TestRouting(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		root := newBackend(t, "root", nil)
		api := newBackend(t, "api", nil)
		wild := newBackend(t, "wild", nil)
		anyHost := newBackend(t, "any", nil)
		def := newBackend(t, "default", nil)
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("app.example.com",
				prefix("/", backendOf("root", "", root)),
				prefix("/api", backendOf("api", "", api)),
			),
			vhost("*.example.com", prefix("/", backendOf("wild", "", wild))),
			vhost("", prefix("/healthz", backendOf("any", "", anyHost))),
		}, &route.Route{Backends: route.Single(backendOf("default", "", def))})
		addr, _ := startProxy(t, e, tbl, Options{})
		c := newClient(t)

		tests := []struct{ host, path, want string }{
			{"app.example.com", "/", "root /"},
			{"app.example.com", "/index.html?x=1", "root /index.html"},
			{"APP.example.com:8080", "/api", "api /api"},
			{"app.example.com", "/api/v1/users", "api /api/v1/users"},
			{"app.example.com", "/apix", "root /apix"},
			{"shop.example.com", "/cart", "wild /cart"},
			{"a.b.example.com", "/", "default /"},
			{"example.com", "/", "default /"},
			{"unknown.test", "/healthz", "any /healthz"},
			{"unknown.test", "/other", "default /other"},
			{"127.0.0.1", "/", "default /"},
		}
		for _, tt := range tests {
			t.Run(tt.host+tt.path, func(t *testing.T) {
				t.Parallel()
				resp, body := get(t, c, addr, tt.host, tt.path)
				if resp.StatusCode != http.StatusOK || body != tt.want {
					t.Errorf("GET %s%s = %d %q, want 200 %q", tt.host, tt.path, resp.StatusCode, body, tt.want)
				}
			})
		}
	})
}

func TestErrorResponses(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		ok := newBackend(t, "ok", nil)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done(): // the proxy gave up and closed the connection
			}
		})
		closedAddr := deadAddr(t)

		refused := &route.Backend{Key: "ns/refused:80", Service: "refused", Endpoints: []route.Endpoint{{Address: closedAddr}}}
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("app.test",
				prefix("/ok", backendOf("ok", "", ok)),
				prefix("/empty", &route.Backend{Key: "ns/empty:80", Service: "empty"}),
				prefix("/unavailable", &route.Backend{Key: "ns/gone:80", Service: "gone", Unavailable: `service "gone" not found`}),
				prefix("/refused", refused),
				prefix("/slow", backendOf("slow", "", slow)),
			),
		}, nil) // no default backend
		addr, _ := startProxy(t, e, tbl, Options{ResponseHeaderTimeout: 200 * time.Millisecond})
		c := newClient(t)

		tests := []struct {
			name, host, path string
			want             int
		}{
			{"no route", "app.test", "/nothing", http.StatusNotFound},
			{"no host", "other.test", "/ok", http.StatusNotFound},
			{"no endpoints", "app.test", "/empty", http.StatusServiceUnavailable},
			{"unavailable", "app.test", "/unavailable", http.StatusServiceUnavailable},
			{"connection refused", "app.test", "/refused", http.StatusBadGateway},
			{"response header timeout", "app.test", "/slow", http.StatusGatewayTimeout},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				resp, body := get(t, c, addr, tt.host, tt.path)
				if resp.StatusCode != tt.want {
					t.Fatalf("GET %s%s = %d %q, want %d", tt.host, tt.path, resp.StatusCode, body, tt.want)
				}
				checkErrorBody(t, resp.Header, body, tt.want, closedAddr, slow.addr(), "gone", "empty")
			})
		}
		if resp, body := get(t, c, addr, "app.test", "/ok"); resp.StatusCode != http.StatusOK {
			t.Errorf("healthy route = %d %q", resp.StatusCode, body)
		}
	})
}

func TestSpecialRequestTargets(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}), Options{})
		tests := []struct {
			name, req string
			want      int
		}{
			{"OPTIONS *", "OPTIONS * HTTP/1.1\nHost: x\n\n", http.StatusOK},
			{"GET *", "GET * HTTP/1.1\nHost: x\n\n", http.StatusBadRequest},
			{"CONNECT", "CONNECT internal.example:22 HTTP/1.1\nHost: internal.example:22\n\n", http.StatusMethodNotAllowed},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				resps, _, _ := exchange(t, addr, crlf(tt.req), 1)
				if len(resps) != 1 || resps[0].StatusCode != tt.want {
					t.Fatalf("responses %v, want one %d", resps, tt.want)
				}
			})
		}
		if n := b.hits.Load(); n != 0 {
			t.Errorf("backend got %d requests, want 0", n)
		}
	})
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		tbl := route.NewTable([]*route.VirtualHost{vhost("app.example.com", prefix("/", backendOf("b", "", b)))}, nil)
		addr, h := startProxy(t, e, tbl, Options{})

		check := func(t *testing.T, wantProto string, wantXFF string) {
			t.Helper()
			r := b.lastRequest()
			want := map[string]string{
				"X-Forwarded-For":   wantXFF,
				"X-Real-Ip":         "127.0.0.1",
				"X-Forwarded-Host":  "app.example.com",
				"X-Forwarded-Proto": wantProto,
				"Forwarded":         "",
				"User-Agent":        "test-agent",
				"Accept-Encoding":   "br",
			}
			if r.Host != "app.example.com" {
				t.Errorf("backend saw Host %q, want app.example.com", r.Host)
			}
			for k, v := range want {
				if got := strings.Join(r.Header.Values(k), "|"); got != v {
					t.Errorf("backend saw %s %q, want %q", k, got, v)
				}
			}
		}

		t.Run("http", func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
			req.Host = "app.example.com"
			// What a client may claim; none of it is kept from an untrusted
			// peer (trust_test.go covers trusted ones).
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			req.Header.Add("X-Forwarded-For", "198.51.100.1")
			req.Header.Set("X-Real-IP", "192.0.2.66")
			req.Header.Set("X-Forwarded-Host", "evil.test")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Forwarded", "for=192.0.2.66")
			req.Header.Set("User-Agent", "test-agent")
			req.Header.Set("Accept-Encoding", "br")
			if resp, body := do(t, newClient(t), req); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			check(t, "http", "127.0.0.1")
		})
		t.Run("https", func(t *testing.T) {
			srv := httptest.NewUnstartedServer(h)
			srv.Config.ErrorLog = newStdLog(zap.NewNop())
			srv.StartTLS()
			defer srv.Close()
			c := srv.Client()
			c.Timeout = testTimeout
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/x", nil)
			req.Host = "app.example.com"
			req.Header.Set("User-Agent", "test-agent")
			req.Header.Set("Accept-Encoding", "br")
			if resp, body := do(t, c, req); resp.StatusCode != http.StatusOK || resp.TLS == nil {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			check(t, "https", "127.0.0.1")
		})
	})
}

func TestHopByHopHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "X-Resp-Hop")
			w.Header().Set("X-Resp-Hop", "1")
			w.Header().Set("Keep-Alive", "timeout=99")
			w.Header().Set("X-Resp-End", "1")
			fmt.Fprint(w, "ok")
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}), Options{})
		resps, _, _ := exchange(t, addr, crlf(`GET / HTTP/1.1
Host: app.test
Connection: keep-alive, X-Hop
X-Hop: secret
Keep-Alive: timeout=5
Proxy-Authorization: Basic dXNlcjpwYXNz
Proxy-Connection: keep-alive
Te: gzip
X-End: 1
Connection: close

`), 1)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusOK {
			t.Fatalf("responses %v", resps)
		}
		r := b.lastRequest()
		for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te"} {
			if v, ok := r.Header[k]; ok {
				t.Errorf("backend got hop-by-hop %s: %q", k, v)
			}
		}
		if r.Header.Get("X-End") != "1" {
			t.Errorf("backend did not get the end-to-end X-End header: %v", r.Header)
		}
		got := resps[0].Header
		for _, k := range []string{"X-Resp-Hop", "Keep-Alive"} {
			if v, ok := got[k]; ok {
				t.Errorf("client got hop-by-hop %s: %q", k, v)
			}
		}
		if got.Get("X-Resp-End") != "1" {
			t.Errorf("client did not get the end-to-end X-Resp-End header: %v", got)
		}
	})
}

// A response's trailer fields reach the client, announced in its head as
// the endpoint announced them (the Trailer field is hop-by-hop only in
// name: it describes the chunked body that is relayed).
func TestTrailersRelayed(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			fmt.Fprint(w, "part one,")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "part two")
			w.Header().Set("X-Checksum", "42")
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}), Options{})
		c := newClient(t)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "app.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, ok := resp.Trailer["X-Checksum"]; !ok {
			t.Errorf("the response head announced trailers %v, want X-Checksum", resp.Trailer)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "part one,part two" {
			t.Fatalf("body %q, %v", body, err)
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "42" {
			t.Errorf("trailer X-Checksum = %q, want 42", got)
		}
	})
}

func TestRoundRobinAcrossBackends(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		bs := []*testBackend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
		be := backendOf("web", "", bs...)
		addr, h := startProxy(t, e, route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", be))}, nil), Options{})
		c := newClient(t)
		for range 30 {
			if resp, body := get(t, c, addr, "app.test", "/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
		}
		for _, b := range bs {
			if n := b.hits.Load(); n != 10 {
				t.Errorf("backend %s got %d of 30 requests, want exactly 10", b.name, n)
			}
		}

		// A new table with new Backend values for the same Service (what the
		// controller builds on every change): the rotation carries on where it
		// was, at the first endpoint again after 30 picks.
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", backendOf("web", "", bs...)))}, nil))
		for i, want := range []string{"a", "b", "c", "a"} {
			if _, body := get(t, c, addr, "app.test", "/"); !strings.HasPrefix(body, want+" ") {
				t.Errorf("request %d after the swap went to %q, want backend %s", i, body, want)
			}
		}
	})
}

func TestLeastRequestAvoidsBusyEndpoint(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		arrived := make(chan string, 1)
		release := make(chan struct{})
		handler := func(name string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("block") != "" {
					arrived <- name
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
				fmt.Fprint(w, name)
			}
		}
		a, b := newBackend(t, "a", handler("a")), newBackend(t, "b", handler("b"))
		tbl := route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", backendOf("web", balancer.PolicyLeastRequest, a, b)))}, nil)
		addr, h := startProxy(t, e, tbl, Options{})
		c := newClient(t)

		blocked := make(chan string, 1)
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/?block=1", nil)
			req.Host = "app.test"
			resp, err := c.Do(req)
			if err != nil {
				blocked <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			blocked <- string(body)
		}()
		var busy string
		select {
		case busy = <-arrived:
		case <-time.After(testTimeout):
			t.Fatal("the blocking request never reached a backend")
		}
		if _, ok := h.cluster.Balancers().Get(tbl.Backends()[0]).(*balancer.LeastRequest); !ok {
			t.Fatal("the least-request annotation did not select the least-request balancer")
		}
		// With two endpoints, power of two choices compares both every time:
		// every request goes to the idle one while the other has one in flight.
		for i := range 20 {
			if _, body := get(t, c, addr, "app.test", "/"); body == busy {
				t.Fatalf("request %d went to %s, which has a request in flight", i, busy)
			}
		}
		close(release)
		if got := <-blocked; got != busy {
			t.Errorf("blocked request answered %q, want %q", got, busy)
		}
	})
}

func TestSwapWhileRequestInFlight(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		arrived := make(chan struct{})
		release := make(chan struct{})
		old := newBackend(t, "old", func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-release
			fmt.Fprint(w, "old")
		})
		next := newBackend(t, "new", nil)
		addr, h := startProxy(t, e, route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", backendOf("old", "", old)))}, nil), Options{})
		c := newClient(t)

		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/", nil)
			req.Host = "app.test"
			resp, err := c.Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprintf("%d %s", resp.StatusCode, body)
		}()
		select {
		case <-arrived:
		case <-time.After(testTimeout):
			t.Fatal("request never reached the old backend")
		}
		// The old backend leaves the table entirely while serving.
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("app.test", prefix("/", backendOf("new", "", next)))}, nil))
		if _, body := get(t, c, addr, "app.test", "/"); body != "new /" {
			t.Errorf("request after the swap = %q, want the new backend", body)
		}
		close(release)
		select {
		case got := <-done:
			if got != "200 old" {
				t.Errorf("in-flight request = %q, want 200 old", got)
			}
		case <-time.After(testTimeout):
			t.Fatal("in-flight request never completed")
		}
		if n := h.cluster.InFlight().Count(old.addr()); n != 0 {
			t.Errorf("%d requests still counted in flight to the old endpoint", n)
		}
	})
}

func TestSwapNilServesEmptyTable(t *testing.T) {
	t.Parallel()
	h := New(Options{})
	h.Swap(nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.test/", nil))
	if rec.Code != http.StatusNotFound || h.Table() == nil {
		t.Errorf("status %d, table %v; want 404 and an empty table", rec.Code, h.Table())
	}
}

func TestClientGoneIsLoggedNotAnswered(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		core, logs := observer.New(zapcore.DebugLevel)
		arrived := make(chan struct{})
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-r.Context().Done()
		})
		addr, _ := startProxy(t, e, route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("b", "", b))}), Options{Logger: zap.New(core)})
		c := rawConn(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(testTimeout):
			t.Fatal("request never reached the backend")
		}
		c.Close()
		deadline := time.Now().Add(testTimeout)
		for logs.FilterMessage("client went away").Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no 'client went away' log; logs: %v", logs.All())
			}
			time.Sleep(10 * time.Millisecond)
		}
		ent := logs.FilterMessage("client went away").All()[0]
		if ent.Level != zapcore.DebugLevel || ent.ContextMap()["status"] != int64(StatusClientClosedRequest) {
			t.Errorf("log entry %v %v, want debug with status 499", ent.Level, ent.ContextMap())
		}
	})
}

func TestBackendFailureIsLoggedWithUpstream(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	hangup := hangupAddr(t) // accepts and hangs up without answering
	be := &route.Backend{Key: "ns/hangup:80", Endpoints: []route.Endpoint{{Address: hangup}}}
	h := New(Options{Logger: zap.New(core)})
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(be)}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.test/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	checkErrorBody(t, rec.Header(), rec.Body.String(), http.StatusBadGateway, hangup)
	entries := logs.FilterMessage("upstream failed").All()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel || entries[0].ContextMap()["upstream"] != hangup {
		t.Errorf("logs = %v, want one warning naming the upstream", logs.All())
	}
}

// TestConcurrentRequestsAndSwaps is for the race detector.
func TestConcurrentRequestsAndSwaps(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		bs := []*testBackend{newBackend(t, "a", nil), newBackend(t, "b", nil)}
		tables := []*route.Table{
			route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("web", "", bs...))}),
			route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("web", balancer.PolicyLeastRequest, bs...))}),
			route.NewTable(nil, &route.Route{Backends: route.Single(backendOf("other", "", bs[0]))}),
		}
		addr, h := startProxy(t, e, tables[0], Options{})
		c := newClient(t)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				h.Swap(tables[i%len(tables)])
			}
		})
		var clients sync.WaitGroup
		for range 4 {
			clients.Go(func() {
				for range 25 {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/", nil)
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			})
		}
		clients.Wait()
		close(stop)
		wg.Wait()
	})
}
