package proxy

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// newTransport returns the one *http.Transport a Handler sends every
// request through, tuned for a proxy in front of many endpoints.
func newTransport(opts Options) *http.Transport {
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
	// Backends speak HTTP/1.1 for now: no h2c, no TLS to endpoints.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
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
		Protocols:             &protocols,
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
