package proxy

import (
	"context"
	"crypto/tls"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// transports holds the connection pools to the endpoints: one
// http.Transport per endpoint address and transport settings (the protocol
// of the request's backend and its connect and read timeouts), made on
// first use. Most endpoints get one.
//
// A pool per endpoint, rather than one shared pool per protocol, is what
// lets a table swap drain an endpoint it removed: http.Transport can close
// the idle connections of a whole pool, never those of one host. When an
// endpoint leaves the table its pools close their idle connections, and
// (closeIdle in http.Transport) every connection that becomes idle after
// that, that is each one still busy with a request when that request ends
// (and the last request to end closes them again, in case another request
// of the old table reused the pool meanwhile). A request of the old table
// that reaches a removed endpoint only after the swap gets pools of its
// own, drained the same way when it ends. Finding the pool costs a request
// one lookup in a copy-on-write map and two atomic adds; it never locks or
// allocates once the pool exists. The price: idle connections are capped
// per endpoint (MaxIdleConnsPerHost) and no longer in total.
type transports struct {
	dial, respHdr time.Duration // defaults of the backends' connect and read timeouts
	perHost       int           // idle connections kept per endpoint and settings

	pools atomic.Pointer[map[string]*endpointPools] // by address: the table's endpoints
	mu    sync.Mutex                                // serialises writers of pools
}

// endpointPools are the transports to one endpoint address.
type endpointPools struct {
	list    atomic.Pointer[[]pool] // copy on write; usually one
	mu      sync.Mutex             // serialises writers of list
	active  atomic.Int64           // requests using, or that got a response from, one of them
	removed atomic.Bool            // the table no longer has the address: drain

	// The fast path's idle connections (h1Engine), under h1mu.
	h1mu   sync.Mutex
	h1idle []*h1UpConn
}

// pool is one transport of an endpoint, with the settings it was made for.
type pool struct {
	key poolKey
	tr  *http.Transport
}

// poolKey are the settings a transport is made for.
type poolKey struct {
	kind             transportKind
	connect, respHdr time.Duration
}

// transportKind is how a transport speaks to its endpoint.
type transportKind uint8

const (
	kindH1    transportKind = iota // HTTP/1.1 over TCP (the default)
	kindH1TLS                      // HTTP/1.1 over TLS
	kindH2C                        // HTTP/2 over TCP, prior knowledge (H2C, GRPC)
	kindH2TLS                      // HTTP/2 over TLS (GRPCS)
)

func kindOf(p route.Protocol) transportKind {
	switch p {
	case route.ProtocolHTTPS:
		return kindH1TLS
	case route.ProtocolH2C, route.ProtocolGRPC:
		return kindH2C
	case route.ProtocolGRPCS:
		return kindH2TLS
	}
	return kindH1
}

func newTransports(opts Options) *transports {
	t := &transports{dial: opts.DialTimeout, respHdr: opts.ResponseHeaderTimeout, perHost: opts.MaxIdleConnsPerHost}
	if t.dial <= 0 {
		t.dial = DefaultDialTimeout
	}
	if t.respHdr <= 0 {
		t.respHdr = DefaultResponseHeaderTimeout
	}
	if t.perHost <= 0 {
		t.perHost = DefaultMaxIdleConnsPerHost
	}
	return t
}

// RoundTrip sends req to the endpoint its URL names, with the transport
// for the settings of its backend. The request is counted as using the
// endpoint until the handler ends it (reqState.done), or until RoundTrip
// returns when it fails.
func (t *transports) RoundTrip(req *http.Request) (*http.Response, error) {
	key := poolKey{kind: kindH1, connect: t.dial, respHdr: t.respHdr}
	st := stateOf(req)
	if st != nil {
		be := st.backend
		key.kind = kindOf(be.Protocol)
		key.connect, key.respHdr = t.connectTimeout(be), t.readTimeout(be)
	}
	ep := t.endpoint(req.URL.Host)
	tr := ep.transport(key, t.perHost)
	ep.active.Add(1)
	resp, err := tr.RoundTrip(req)
	if err != nil || st == nil {
		ep.release()
		return resp, err
	}
	st.pools = ep
	return resp, nil
}

// connectTimeout is how long connecting to an endpoint of be may take:
// postern.dev/timeout-connect, else --upstream-connect-timeout.
func (t *transports) connectTimeout(be *route.Backend) time.Duration {
	if be.ConnectTimeout > 0 {
		return time.Duration(be.ConnectTimeout)
	}
	return t.dial
}

// readTimeout is how long an endpoint of be may take to start its
// response: postern.dev/timeout-read, else --upstream-response-timeout.
func (t *transports) readTimeout(be *route.Backend) time.Duration {
	if be.ReadTimeout > 0 {
		return time.Duration(be.ReadTimeout)
	}
	return t.respHdr
}

// endpoint returns the pools of addr. An address the table no longer has
// (a request that started on the previous one) gets pools of its own that
// are drained when that request ends.
func (t *transports) endpoint(addr string) *endpointPools {
	if m := t.pools.Load(); m != nil {
		if ep := (*m)[addr]; ep != nil {
			return ep
		}
	}
	ep := new(endpointPools)
	ep.removed.Store(true)
	return ep
}

// retain makes the pools held exactly those of addrs, the endpoint
// addresses of a table about to be swapped in: it adds the missing ones
// and drains the rest.
func (t *transports) retain(addrs []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.pools.Load()
	m := make(map[string]*endpointPools, len(addrs))
	for _, a := range addrs {
		if _, ok := m[a]; ok {
			continue
		}
		var ep *endpointPools
		if old != nil {
			ep = (*old)[a]
		}
		if ep == nil {
			ep = new(endpointPools)
		}
		m[a] = ep
	}
	t.pools.Store(&m)
	if old == nil {
		return
	}
	for a, ep := range *old {
		if _, kept := m[a]; !kept {
			ep.removed.Store(true)
			ep.closeIdle()
		}
	}
}

// update adds pools for the addresses of added and drains those of
// removed: retain for a table that differs from the last one by just
// those, at the cost of one copy of the map.
func (t *transports) update(added, removed []string) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.pools.Load()
	var m map[string]*endpointPools
	if old != nil {
		m = maps.Clone(*old) // no re-hashing: see balancer.updated
	} else {
		m = make(map[string]*endpointPools, len(added))
	}
	for _, a := range removed {
		if ep := m[a]; ep != nil {
			ep.removed.Store(true)
			ep.closeIdle()
			delete(m, a)
		}
	}
	for _, a := range added {
		if m[a] == nil {
			m[a] = new(endpointPools)
		}
	}
	t.pools.Store(&m)
}

// CloseIdleConnections closes the idle connections of every pool.
func (t *transports) CloseIdleConnections() {
	if m := t.pools.Load(); m != nil {
		for _, ep := range *m {
			ep.closeIdle()
		}
	}
}

// transport returns the transport for k, making it on first use.
func (ep *endpointPools) transport(k poolKey, perHost int) *http.Transport {
	if l := ep.list.Load(); l != nil {
		for i := range *l {
			if (*l)[i].key == k {
				return (*l)[i].tr
			}
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var old []pool
	if l := ep.list.Load(); l != nil {
		old = *l
		for i := range old {
			if old[i].key == k {
				return old[i].tr
			}
		}
	}
	l := append(slices.Clip(old), pool{key: k, tr: newTransport(k, perHost)})
	ep.list.Store(&l)
	return l[len(l)-1].tr
}

// release ends a request counted in active; the last request to an
// endpoint that was removed closes its idle connections.
func (ep *endpointPools) release() {
	if ep.active.Add(-1) == 0 && ep.removed.Load() {
		ep.closeIdle()
	}
}

func (ep *endpointPools) closeIdle() {
	ep.h1CloseIdle()
	if l := ep.list.Load(); l != nil {
		for _, p := range *l {
			p.tr.CloseIdleConnections()
		}
	}
}

// backendScheme is the URL scheme of requests to a backend of protocol p.
func backendScheme(p route.Protocol) string {
	if p == route.ProtocolHTTPS || p == route.ProtocolGRPCS {
		return "https"
	}
	return "http"
}

// newTransport returns an *http.Transport for one endpoint with the
// settings of k, tuned for a proxy.
func newTransport(k poolKey, perHost int) *http.Transport {
	var protocols http.Protocols
	switch k.kind {
	case kindH1, kindH1TLS:
		protocols.SetHTTP1(true)
	case kindH2C:
		protocols.SetUnencryptedHTTP2(true)
	case kindH2TLS:
		protocols.SetHTTP2(true)
	}
	dialer := &net.Dialer{Timeout: k.connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		// Never send traffic through HTTP_PROXY & co. of the proxy's own
		// environment.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return sysConnOf(c), nil
		},
		MaxIdleConns:          perHost,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: k.respHdr,
		ExpectContinueTimeout: 1 * time.Second,
		ForceAttemptHTTP2:     false,
		Protocols:             &protocols,
		// Pass Content-Encoding through untouched: never ask for gzip on
		// the client's behalf, never decode a response.
		DisableCompression: true,
	}
	if k.kind == kindH1TLS || k.kind == kindH2TLS {
		// Backends behind an ingress serve certificates for their own
		// cluster names, or self-signed ones; like ingress-nginx
		// (proxy_ssl_verify off) the connection is encrypted but the
		// certificate is not verified.
		tr.TLSClientConfig = &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // see above: backend certificates are not verified, as in ingress-nginx
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(0),
		}
	}
	return tr
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
