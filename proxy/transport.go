package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// transports sends each request with the transport for its backend's
// protocol (route.Backend.Protocol): one connection pool per protocol,
// shared by every endpoint.
type transports struct {
	h1    *http.Transport // HTTP/1.1 over TCP (the default)
	h1tls *http.Transport // HTTP/1.1 over TLS
	h2c   *http.Transport // HTTP/2 over TCP, prior knowledge (H2C, GRPC)
	h2tls *http.Transport // HTTP/2 over TLS (GRPCS)
}

func newTransports(opts Options) *transports {
	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetHTTP2(true)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	t := &transports{
		h1:    newTransport(opts, &h1),
		h1tls: newTransport(opts, &h1),
		h2c:   newTransport(opts, &h2c),
		h2tls: newTransport(opts, &h2),
	}
	// Backends behind an ingress serve certificates for their own cluster
	// names, or self-signed ones; like ingress-nginx (proxy_ssl_verify off)
	// the connection is encrypted but the certificate is not verified.
	for _, tr := range []*http.Transport{t.h1tls, t.h2tls} {
		tr.TLSClientConfig = &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // see above: backend certificates are not verified, as in ingress-nginx
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(1024),
		}
	}
	return t
}

// RoundTrip sends req with the transport of its backend's protocol.
func (t *transports) RoundTrip(req *http.Request) (*http.Response, error) {
	tr := t.h1
	if st := stateOf(req); st != nil {
		switch st.backend.Protocol {
		case route.ProtocolHTTPS:
			tr = t.h1tls
		case route.ProtocolH2C, route.ProtocolGRPC:
			tr = t.h2c
		case route.ProtocolGRPCS:
			tr = t.h2tls
		}
	}
	return tr.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of every pool.
func (t *transports) CloseIdleConnections() {
	for _, tr := range []*http.Transport{t.h1, t.h1tls, t.h2c, t.h2tls} {
		tr.CloseIdleConnections()
	}
}

// backendScheme is the URL scheme of requests to a backend of protocol p.
func backendScheme(p route.Protocol) string {
	if p == route.ProtocolHTTPS || p == route.ProtocolGRPCS {
		return "https"
	}
	return "http"
}

// newTransport returns an *http.Transport speaking protocols, tuned for a
// proxy in front of many endpoints.
func newTransport(opts Options, protocols *http.Protocols) *http.Transport {
	dial := opts.DialTimeout
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	header := opts.ResponseHeaderTimeout
	if header <= 0 {
		header = DefaultResponseHeaderTimeout
	}
	perHost := opts.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	return &http.Transport{
		// Never send traffic through HTTP_PROXY & co. of the proxy's own
		// environment.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   dial,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: header,
		ExpectContinueTimeout: 1 * time.Second,
		ForceAttemptHTTP2:     false,
		Protocols:             protocols,
		// Pass Content-Encoding through untouched: never ask for gzip on
		// the client's behalf, never decode a response.
		DisableCompression: true,
	}
}

// bufferSize is the size of the buffers response bodies are copied with,
// as ReverseProxy would allocate per request without a pool.
const bufferSize = 32 << 10

var buffers = sync.Pool{New: func() any { return new([bufferSize]byte) }}

// bufferPool lends ReverseProxy its copy buffers. It pools array pointers,
// which fit in an interface without an allocation, unlike slices.
type bufferPool struct{}

func (bufferPool) Get() []byte { return buffers.Get().(*[bufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if len(b) == bufferSize {
		buffers.Put((*[bufferSize]byte)(b))
	}
}
