package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/internal/sysio"
	"github.com/postern-dev/postern/proxy/route"
)

// pools holds the connection pools to the endpoints, one Pools per
// endpoint address of the table served.
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
// own, drained the same way when it ends. Finding the pools costs a
// request one lookup in a copy-on-write map and two atomic adds; it never
// locks or allocates once they exist. The price: idle connections are
// capped per endpoint (MaxIdleConnsPerHost) and no longer in total.
type pools struct {
	perHost int // idle connections kept per endpoint and transport

	m  atomic.Pointer[map[string]*Pools] // by address: the table's endpoints
	mu sync.Mutex                        // serialises writers of m
}

// Pools are the connections to one endpoint address: the engine's own
// HTTP/1.1 connections (Conn) and net/http Transports, one per protocol
// and timeouts (most endpoints get one).
type Pools struct {
	perHost int
	list    atomic.Pointer[[]pool] // copy on write; usually one
	mu      sync.Mutex             // serialises writers of list
	active  atomic.Int64           // requests using, or that got a response from, one of them
	removed atomic.Bool            // the table no longer has the address: drain

	// The engine's idle HTTP/1.1 connections, under h1mu.
	h1mu   sync.Mutex
	h1idle []*Conn
}

// pool is one transport of an endpoint, with the settings it was made for.
type pool struct {
	key poolKey
	tr  *http.Transport
}

// poolKey are the settings a transport is made for.
type poolKey struct {
	kind             Kind
	connect, respHdr time.Duration
	tls              string // route.BackendTLS.ID; "": the default TLS
}

// Kind is how a connection speaks to its endpoint.
type Kind uint8

// The kinds of connections to endpoints.
const (
	KindH1    Kind = iota // HTTP/1.1 over TCP (the default)
	KindH1TLS             // HTTP/1.1 over TLS
	KindH2C               // HTTP/2 over TCP, prior knowledge (H2C, GRPC)
	KindH2TLS             // HTTP/2 over TLS (GRPCS)
)

// KindOf returns the kind of connection a backend of protocol p needs.
func KindOf(p route.Protocol) Kind {
	switch p {
	case route.ProtocolHTTPS:
		return KindH1TLS
	case route.ProtocolH2C, route.ProtocolGRPC:
		return KindH2C
	case route.ProtocolGRPCS:
		return KindH2TLS
	}
	return KindH1
}

// Scheme is the URL scheme of requests to a backend of protocol p.
func Scheme(p route.Protocol) string {
	if p == route.ProtocolHTTPS || p == route.ProtocolGRPCS {
		return "https"
	}
	return "http"
}

// Pools returns the pools of addr. An address the table no longer has (a
// request that started on the previous one) gets pools of its own that are
// drained when that request ends.
func (c *Cluster) Pools(addr string) *Pools {
	if m := c.pools.m.Load(); m != nil {
		if ep := (*m)[addr]; ep != nil {
			return ep
		}
	}
	ep := &Pools{perHost: c.pools.perHost}
	ep.removed.Store(true)
	return ep
}

// retain makes the pools held exactly those of addrs, the endpoint
// addresses of a table about to be swapped in: it adds the missing ones
// and drains the rest.
func (p *pools) retain(addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.m.Load()
	m := make(map[string]*Pools, len(addrs))
	for _, a := range addrs {
		if _, ok := m[a]; ok {
			continue
		}
		var ep *Pools
		if old != nil {
			ep = (*old)[a]
		}
		if ep == nil {
			ep = &Pools{perHost: p.perHost}
		}
		m[a] = ep
	}
	p.m.Store(&m)
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
func (p *pools) update(added, removed []string) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.m.Load()
	var m map[string]*Pools
	if old != nil {
		m = maps.Clone(*old) // no re-hashing: see balancer.updated
	} else {
		m = make(map[string]*Pools, len(added))
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
			m[a] = &Pools{perHost: p.perHost}
		}
	}
	p.m.Store(&m)
}

// closeIdle closes the idle connections of every pool.
func (p *pools) closeIdle() {
	if m := p.m.Load(); m != nil {
		for _, ep := range *m {
			ep.closeIdle()
		}
	}
}

// Begin counts a request using the pools until End: an endpoint that was
// removed closes its connections once the last one ends.
func (ep *Pools) Begin() { ep.active.Add(1) }

// End ends a request counted by Begin; the last request to an endpoint
// that was removed closes its idle connections.
func (ep *Pools) End() {
	if ep.active.Add(-1) == 0 && ep.removed.Load() {
		ep.closeIdle()
	}
}

// Removed reports whether the table no longer has the endpoint: a
// connection that comes back from a request is closed, not kept.
func (ep *Pools) Removed() bool { return ep.removed.Load() }

// Transport returns the transport for requests of kind k with settings s
// and, for a TLS kind, bt (nil: the default TLS), making it on first use.
func (ep *Pools) Transport(k Kind, s Settings, bt *route.BackendTLS) *http.Transport {
	key := poolKey{kind: k, connect: s.ConnectTimeout, respHdr: s.ReadTimeout}
	if bt != nil && (k == KindH1TLS || k == KindH2TLS) {
		key.tls = bt.ID
	} else {
		bt = nil
	}
	if l := ep.list.Load(); l != nil {
		for i := range *l {
			if (*l)[i].key == key {
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
			if old[i].key == key {
				return old[i].tr
			}
		}
	}
	l := append(slices.Clip(old), pool{key: key, tr: newTransport(key, bt, ep.perHost)})
	ep.list.Store(&l)
	return l[len(l)-1].tr
}

func (ep *Pools) closeIdle() {
	ep.h1CloseIdle()
	if l := ep.list.Load(); l != nil {
		for _, p := range *l {
			p.tr.CloseIdleConnections()
		}
	}
}

// newTransport returns an *http.Transport for one endpoint with the
// settings of k and bt (nil: the default TLS), tuned for a proxy.
func newTransport(k poolKey, bt *route.BackendTLS, perHost int) *http.Transport {
	var protocols http.Protocols
	switch k.kind {
	case KindH1, KindH1TLS:
		protocols.SetHTTP1(true)
	case KindH2C:
		protocols.SetUnencryptedHTTP2(true)
	case KindH2TLS:
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
			return sysio.Wrap(c), nil
		},
		MaxIdleConns:          perHost,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: k.respHdr,
		ExpectContinueTimeout: 1 * time.Second,
		ForceAttemptHTTP2:     false,
		Protocols:             &protocols,
		// Pass Content-Encoding through untouched: never ask for gzip on
		// the client's behalf, never decode a response.
		DisableCompression: true,
	}
	if k.kind == KindH1TLS || k.kind == KindH2TLS {
		// Backends behind an ingress serve certificates for their own
		// cluster names, or self-signed ones; like ingress-nginx
		// (proxy_ssl_verify off) the connection is encrypted but the
		// certificate is not verified.
		tr.TLSClientConfig = &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // see above: backend certificates are not verified, as in ingress-nginx
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(0),
		}
		if bt != nil {
			backendTLS(tr.TLSClientConfig, bt)
		}
	}
	return tr
}

// backendTLS applies bt to c: versions, the client certificate, SNI, and
// the endpoint's certificate verified by VerifyConnection (the name and
// depth as nginx's proxy_ssl_name and proxy_ssl_verify_depth have them).
func backendTLS(c *tls.Config, bt *route.BackendTLS) {
	if bt.MinVersion != 0 {
		c.MinVersion = bt.MinVersion
	}
	c.MaxVersion = bt.MaxVersion
	if bt.ClientCertificate != nil {
		c.Certificates = []tls.Certificate{*bt.ClientCertificate}
	}
	if bt.SNI {
		c.ServerName = bt.ServerName
	}
	if !bt.Verify {
		return
	}
	name, depth, roots := bt.ServerName, max(bt.Depth, 1), bt.RootCAs
	if name == "" {
		name = "upstream_balancer"
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("backend TLS: the endpoint sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, cert := range cs.PeerCertificates[1:] {
			inter.AddCert(cert)
		}
		opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}
		if len(bt.SubjectAltNames) > 0 {
			opts.DNSName = "" // the names below are checked instead
		}
		chains, err := cs.PeerCertificates[0].Verify(opts)
		if err != nil {
			return fmt.Errorf("backend TLS: %w", err)
		}
		if len(bt.SubjectAltNames) > 0 && !hasSAN(cs.PeerCertificates[0], bt.SubjectAltNames) {
			return errors.New("backend TLS: the endpoint's certificate has none of the subject alternative names asked for")
		}
		for _, ch := range chains {
			if len(ch)-1 <= depth {
				return nil
			}
		}
		return fmt.Errorf("backend TLS: the endpoint's certificate chain is longer than proxy-ssl-verify-depth %d", depth)
	}
}

// idleConnTimeout is how long an idle connection to an endpoint is kept,
// in the Transports and in the engine's pools alike.
const idleConnTimeout = 90 * time.Second

// hasSAN reports whether c has one of sans among its subject alternative
// names.
func hasSAN(c *x509.Certificate, sans []route.SubjectAltName) bool {
	for _, san := range sans {
		switch {
		case san.DNS != "":
			if c.VerifyHostname(san.DNS) == nil {
				return true
			}
		case san.URI != "":
			for _, u := range c.URIs {
				if u.String() == san.URI {
					return true
				}
			}
		}
	}
	return false
}
