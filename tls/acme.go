package tls

import (
	"context"
	"crypto/ecdsa"
	stdtls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/postern-dev/postern/proxy/route"
)

// DefaultDirectoryURL is the ACME directory used when none is configured:
// Let's Encrypt's production CA.
const DefaultDirectoryURL = "https://acme-v02.api.letsencrypt.org/directory"

// DefaultRenewBefore is how long before expiry ACME certificates are
// renewed when ACMEOptions.RenewBefore is zero.
const DefaultRenewBefore = 30 * 24 * time.Hour

// ErrNotLeader is the error the ACME client gets for every request to the
// CA while CanOrder reports false.
var ErrNotLeader = errors.New("not the leader: another replica orders certificates")

// ErrNoCertificate is returned by ACME.GetCertificate for a host that has
// no ACME certificate yet.
var ErrNoCertificate = errors.New("no acme certificate for the host yet")

// errNotCached is why a replica that may not order has no certificate.
var errNotCached = errors.New("no certificate in the shared cache yet; the leader orders it")

// ACMEOptions configures an ACME issuer.
type ACMEOptions struct {
	// DirectoryURL is the CA's ACME directory; empty means
	// DefaultDirectoryURL. Using it accepts the CA's terms of service.
	DirectoryURL string
	// Email is the contact address of the ACME account; empty registers
	// the account without one.
	Email string
	// CABundle is the path of a PEM file of CA certificates the ACME
	// client trusts in addition to the system roots, for private or test
	// CAs such as pebble; empty trusts the system roots only.
	CABundle string
	// Cache stores the account key, certificates and challenge tokens; it
	// is required. Replicas that share it share certificates, and any of
	// them can answer a challenge another one started.
	Cache autocert.Cache
	// Table returns the live routing table; it is required. Only hosts it
	// marks as ACME (exact hosts, not wildcards) are ordered.
	Table func() *route.Table
	// CanOrder reports whether this replica may talk to the CA (in cluster
	// mode: whether it is the elected leader); nil means always. Replicas
	// that may not order still serve the certificates in the shared cache.
	CanOrder func() bool
	// RenewBefore is how long before expiry a certificate is renewed;
	// zero means DefaultRenewBefore. autocert caps it at 30 days.
	RenewBefore time.Duration
	// Logger receives the issuer's logs; nil discards them.
	Logger *zap.Logger
	// Registry receives the issuer's metrics; nil registers them nowhere.
	Registry prometheus.Registerer
}

// ACME obtains and renews certificates from an ACME CA for the hosts the
// live table marks as ACME, on top of autocert. Handshakes never wait for
// the CA: Sync orders certificates in the background as soon as a host
// appears, and GetCertificate only serves what is already there.
type ACME struct {
	m        *autocert.Manager
	cache    autocert.Cache
	table    func() *route.Table
	canOrder func() bool
	log      *zap.Logger
	okOrders prometheus.Counter
	badOrder prometheus.Counter

	// ready holds the hosts whose certificate autocert has in memory; it is
	// replaced, never modified, so that handshakes read it without a lock.
	ready atomic.Pointer[map[string]struct{}]

	mu    sync.Mutex // guards hosts
	hosts map[string]*hostState
	sem   chan struct{} // bounds concurrent orders
	wg    sync.WaitGroup

	// Seams for tests.
	obtain    func(ctx context.Context, host string) (*stdtls.Certificate, error)
	afterFunc func(time.Duration, func()) stopper
	now       func() time.Time
}

// stopper is the part of *time.Timer a retry needs.
type stopper interface{ Stop() bool }

// NewACME returns an ACME issuer configured by opts. Errors name the
// option at fault; callers add the "acme" context.
func NewACME(opts ACMEOptions) (*ACME, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	roots, err := rootCAs(opts.CABundle)
	if err != nil {
		return nil, err
	}
	log := opts.Logger.Named("acme")

	a := &ACME{
		cache:     opts.Cache,
		table:     opts.Table,
		canOrder:  opts.CanOrder,
		log:       log,
		hosts:     make(map[string]*hostState),
		sem:       make(chan struct{}, 2),
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		now:       time.Now,
	}
	a.obtain = a.obtainCert
	a.ready.Store(&map[string]struct{}{})
	if err := a.registerMetrics(opts.Registry); err != nil {
		return nil, err
	}
	a.m = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       &gatedCache{Cache: opts.Cache, canOrder: opts.CanOrder},
		HostPolicy:  a.hostPolicy,
		RenewBefore: opts.RenewBefore,
		Email:       opts.Email,
		Client:      acmeClient(opts.DirectoryURL, roots, opts.CanOrder, log),
	}
	return a, nil
}

// withDefaults returns opts with what its zero values mean filled in:
// DirectoryURL, RenewBefore, Logger and CanOrder.
func (opts ACMEOptions) withDefaults() ACMEOptions {
	if opts.DirectoryURL == "" {
		opts.DirectoryURL = DefaultDirectoryURL
	}
	if opts.RenewBefore <= 0 {
		opts.RenewBefore = DefaultRenewBefore
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.CanOrder == nil {
		opts.CanOrder = func() bool { return true }
	}
	return opts
}

// validate reports the first required option missing or the directory URL
// that is not an http(s) URL. The CA bundle is checked when rootCAs reads it.
func (opts ACMEOptions) validate() error {
	if opts.Cache == nil {
		return errors.New("no cache given")
	}
	if opts.Table == nil {
		return errors.New("no table given")
	}
	dir := opts.DirectoryURL
	if u, err := url.Parse(dir); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("directory url %q is not an http(s) url", dir)
	}
	return nil
}

// registerMetrics makes a's order counters and registers them on reg, if
// reg is not nil.
func (a *ACME) registerMetrics(reg prometheus.Registerer) error {
	orders := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_tls_acme_orders_total",
		Help: "Attempts to obtain an ACME certificate (from the shared cache or the CA), by result (ok or error).",
	}, []string{"result"})
	a.okOrders, a.badOrder = orders.WithLabelValues("ok"), orders.WithLabelValues("error")
	if reg != nil {
		if err := reg.Register(orders); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// acmeClient returns the client of the CA's directory dir: it trusts roots
// (nil: the system roots) and fails every request with ErrNotLeader while
// canOrder reports false.
func acmeClient(dir string, roots *x509.CertPool, canOrder func() bool, log *zap.Logger) *acme.Client {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &stdtls.Config{RootCAs: roots, MinVersion: stdtls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
	}
	return &acme.Client{
		DirectoryURL: dir,
		UserAgent:    "postern",
		HTTPClient: &http.Client{Transport: &gate{
			base:     transport,
			canOrder: canOrder,
			log:      log,
		}},
	}
}

// rootCAs returns the system roots plus the certificates in the PEM file
// at path, or nil (the system roots) when path is empty.
func rootCAs(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("ca bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// hostPolicy allows exactly the hosts the live table marks as ACME. It
// gets a TLS server name from GetCertificate, and the request's Host with
// its port from the http-01 handler.
func (a *ACME) hostPolicy(_ context.Context, host string) error {
	h := route.NormalizeHost(host)
	if strings.HasPrefix(h, "*.") {
		// Table.TLSHost finds the wildcard entry for its own name, and
		// wildcard certificates need dns-01, which autocert cannot do.
		return fmt.Errorf("acme: wildcard host %q cannot be ordered", h)
	}
	if t := a.table(); t != nil {
		if th := t.TLSHost(h); th != nil && th.ACME && th.Host == h {
			return nil
		}
	}
	return fmt.Errorf("acme: host %q is not an acme host of any ingress", h)
}

// GetCertificate is a crypto/tls Config.GetCertificate hook: it answers
// ACME tls-alpn-01 validation handshakes, and otherwise returns the ACME
// certificate of the server name, or ErrNoCertificate when there is none
// yet. It never orders a certificate: Sync does.
func (a *ACME) GetCertificate(hello *stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
	if isChallenge(hello) {
		return a.m.GetCertificate(hello)
	}
	return a.certificate(hello.ServerName)
}

// ecdsaSuites makes autocert pick the ECDSA certificate it orders by
// default, whatever the client offered: an RSA-only client would otherwise
// make it order a second, RSA certificate during the handshake.
var ecdsaSuites = []uint16{stdtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}

// certificate returns the certificate autocert holds for name, if Sync has
// seen it there.
func (a *ACME) certificate(name string) (*stdtls.Certificate, error) {
	host := route.NormalizeHost(name)
	if _, ok := (*a.ready.Load())[host]; !ok {
		return nil, ErrNoCertificate
	}
	return a.m.GetCertificate(&stdtls.ClientHelloInfo{ServerName: host, CipherSuites: ecdsaSuites})
}

// HTTPHandler answers ACME http-01 challenges under
// /.well-known/acme-challenge/ and passes every other request to fallback
// (nil redirects GET and HEAD to HTTPS with 302). Mount it as the plain
// HTTP listener's outermost handler. Calling it turns on http-01 (next to
// tls-alpn-01) for orders made afterwards. Tokens go through the cache,
// so any replica sharing the cache can answer.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	return a.m.HTTPHandler(fallback)
}

// ACMECertificate is a certificate the ACME issuer holds.
type ACMECertificate struct {
	// Host is the one name the certificate is for.
	Host string
	// NotAfter is when it expires.
	NotAfter time.Time
}

// Certificates returns the certificates the issuer currently holds for
// hosts of the live table, sorted by host.
func (a *ACME) Certificates() []ACMECertificate {
	ready := *a.ready.Load()
	hosts := make([]string, 0, len(ready))
	for h := range ready {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	out := make([]ACMECertificate, 0, len(hosts))
	for _, h := range hosts {
		c, err := a.certificate(h)
		if err != nil || c == nil || c.Leaf == nil {
			continue
		}
		out = append(out, ACMECertificate{Host: h, NotAfter: c.Leaf.NotAfter})
	}
	return out
}

// obtainCert gets the certificate of host into autocert's memory. The
// leader lets autocert take it from the cache or order it; other replicas
// only take what the cache holds, after checking it themselves, so that
// autocert never reaches the point of ordering on their behalf.
func (a *ACME) obtainCert(ctx context.Context, host string) (*stdtls.Certificate, error) {
	if !a.canOrder() {
		if err := a.checkCached(ctx, host); err != nil {
			return nil, err
		}
	}
	return a.m.GetCertificate(&stdtls.ClientHelloInfo{ServerName: host, CipherSuites: ecdsaSuites})
}

// checkCached returns nil when the cache holds a usable certificate for
// host, in autocert's format (the private key, then the chain).
func (a *ACME) checkCached(ctx context.Context, host string) error {
	data, err := a.cache.Get(ctx, host)
	if errors.Is(err, autocert.ErrCacheMiss) {
		return errNotCached
	}
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("cached certificate: %w", errNotCached)
	}
	c, err := ParseKeyPair(route.Source{Name: host}, rest, data[:len(data)-len(rest)], a.now())
	if err != nil {
		return fmt.Errorf("cached certificate: %w (%w)", errNotCached, err)
	}
	if err := c.Cert.Leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("cached certificate: %w (%w)", errNotCached, err)
	}
	// autocert keeps the ECDSA certificate under the bare host name and
	// would try to order when it found another kind of key there.
	if _, ok := c.Cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
		return fmt.Errorf("cached certificate: %w (not an ecdsa key)", errNotCached)
	}
	return nil
}

// acmeHosts returns the exact ACME hosts of the live table that the table
// has no certificate for.
func (a *ACME) acmeHosts() []string {
	t := a.table()
	if t == nil {
		return nil
	}
	var hosts []string
	for _, th := range t.TLS {
		if th.ACME && th.Certificate == nil && th.Host != "" && !strings.HasPrefix(th.Host, "*.") {
			hosts = append(hosts, th.Host)
		}
	}
	return hosts
}
