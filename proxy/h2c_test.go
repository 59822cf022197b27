package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// h2cClient speaks HTTP/2 without TLS, with prior knowledge, as gRPC
// clients do.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableCompression: true, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// The plain listener serves HTTP/2 with prior knowledge beside HTTP/1.1:
// to HTTP/1.1 endpoints, and to gRPC ones with the request body streamed
// and the trailers passed back; the path is decided like any other.
func TestH2CPriorKnowledge(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		h1 := newBackend(t, "h1", nil)
		grpcLike := httptest2c(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = io.WriteString(w, r.Proto+" "+r.URL.Path+" "+string(body))
			w.Header().Set("Grpc-Status", "0")
		}))
		tbl := route.NewTable([]*route.VirtualHost{
			vhost("web.test", prefix("/", backendOf("h1", "", h1))),
			vhost("grpc.test", prefix("/", &route.Backend{Key: "ns/grpc", Protocol: route.ProtocolGRPC,
				Endpoints: []route.Endpoint{{Address: grpcLike}}})),
		}, nil)
		addr, _ := startProxy(t, e, tbl, Options{})
		c := h2cClient(t)

		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/echo.Echo/Echo", strings.NewReader("ping"))
		req.Host = "grpc.test"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || string(body) != "HTTP/2.0 /echo.Echo/Echo ping" {
			t.Errorf("gRPC over h2c: %s %d %q, want HTTP/2 200 %q", resp.Proto, resp.StatusCode, body, "HTTP/2.0 /echo.Echo/Echo ping")
		}
		if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
			t.Errorf("trailer Grpc-Status = %q, want 0 (trailers %v)", got, resp.Trailer)
		}

		req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
		req.Host = "web.test"
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "h1" {
			t.Errorf("h2c to an HTTP/1.1 endpoint: %s %d backend %q, want HTTP/2 200 h1", resp.Proto, resp.StatusCode, resp.Header.Get("X-Backend"))
		}

		req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/x", nil)
		req.Host = "nowhere.test"
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("h2c to an unknown host: %d, want 404", resp.StatusCode)
		}

		// HTTP/1.1 on the same listener is unchanged; a request line that
		// only looks like the preface is a bad request.
		resp, err = newClient(t).Do(mustRequest(t, "http://"+addr+"/x", "web.test"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK {
			t.Errorf("HTTP/1.1: %s %d, want HTTP/1.1 200", resp.Proto, resp.StatusCode)
		}
		var d net.Dialer
		conn, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(testTimeout))
		_, _ = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Errorf("a broken preface: %q, want HTTP/1.1 400", line)
		}
	})
}

// httptest2c serves h over HTTP/2 without TLS on a loopback listener and
// returns its address.
func httptest2c(t *testing.T, h http.Handler) string {
	ln := listen(t)
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// mustRequest is a GET of url with Host host.
func mustRequest(t *testing.T, url, host string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return req
}
