package tls

import (
	"context"
	"crypto/rand"
	stdtls "crypto/tls"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/acme"

	"github.com/postern-dev/postern/proxy/route"
)

// TicketKeyRotation is how often Run replaces the session-ticket key. The
// two keys before the current one are kept for decryption, so a ticket
// stays usable for two to three rotations.
const TicketKeyRotation = time.Hour

// ticketKeys is how many session-ticket keys are kept: the current one and
// the previous two.
const ticketKeys = 3

// StoreOptions configures a Store.
type StoreOptions struct {
	// Table returns the live routing table; it is called once per handshake
	// and must not return nil. A nil Table means a table with no TLS hosts.
	Table func() *route.Table
	// Default is served when nothing else fits (no SNI, unknown host,
	// broken Secret, ACME certificate not issued yet). It is required:
	// while it is nil such handshakes fail.
	Default *route.Certificate
	// ACME issues certificates for the hosts the table marks as ACME; nil
	// turns ACME off and such hosts get the default certificate.
	ACME *ACME
	// Logger receives the store's logs; nil discards them.
	Logger *zap.Logger
	// Registry receives the store's metrics; nil registers them nowhere.
	Registry prometheus.Registerer
}

// Store chooses the certificate for each TLS handshake from the live
// routing table. It is safe for concurrent use.
type Store struct {
	table func() *route.Table
	def   atomic.Pointer[route.Certificate]
	acme  *ACME
	log   *zap.Logger

	// handshakes[result][version], resolved once so that ObserveHandshake
	// does no label lookup.
	handshakes [2][3]prometheus.Counter

	mu      sync.Mutex // guards configs and keys
	configs []*stdtls.Config
	keys    [][32]byte // newest first
}

// NewStore returns a store configured by opts. Its metrics are registered
// on opts.Registry; a registration failure is logged and the store works
// without them.
func NewStore(opts StoreOptions) *Store {
	s := &Store{table: opts.Table, acme: opts.ACME, log: opts.Logger}
	if s.table == nil {
		empty := route.Empty()
		s.table = func() *route.Table { return empty }
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("tls")
	s.def.Store(opts.Default)

	hs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_tls_handshakes_total",
		Help: "TLS handshakes on the HTTPS listener, by result (ok or error) and negotiated version (1.2, 1.3, or empty when none was).",
	}, []string{"result", "version"})
	for r, result := range []string{"ok", "error"} {
		for v, version := range []string{"1.2", "1.3", ""} {
			s.handshakes[r][v] = hs.WithLabelValues(result, version)
		}
	}
	if opts.Registry != nil {
		for _, c := range []prometheus.Collector{hs, &expiryCollector{s: s}} {
			if err := opts.Registry.Register(c); err != nil {
				s.log.Warn("register tls metrics", zap.Error(err))
			}
		}
	}
	return s
}

// SetDefault replaces the default certificate; handshakes that start after
// it returns serve c. A nil c is ignored: the store keeps the certificate it
// has.
func (s *Store) SetDefault(c *route.Certificate) {
	if c != nil {
		s.def.Store(c)
	}
}

// Default returns the current default certificate.
func (s *Store) Default() *route.Certificate { return s.def.Load() }

// ServerConfig returns the TLS configuration for the HTTPS listener: TLS 1.2
// or later, forward-secret AEAD cipher suites only, HTTP/2 and HTTP/1.1 by
// ALPN (and the ACME tls-alpn-01 protocol when ACME is on), certificates
// chosen by GetCertificate, and session tickets whose keys Run rotates.
// Each call returns a new Config; all of them get the rotated keys.
func (s *Store) ServerConfig() *stdtls.Config { return s.serverConfig(s.table) }

// serverConfig is ServerConfig choosing from the table table returns.
func (s *Store) serverConfig(table func() *route.Table) *stdtls.Config {
	protos := []string{"h2", "http/1.1"}
	if s.acme != nil {
		protos = append(protos, acme.ALPNProto)
	}
	cfg := &stdtls.Config{
		MinVersion: stdtls.VersionTLS12,
		// TLS 1.3 suites are not configurable and all qualify; this list
		// only restricts TLS 1.2 to ECDHE key exchange with AEAD ciphers.
		CipherSuites: []uint16{
			stdtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			stdtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			stdtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			stdtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			stdtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			stdtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []stdtls.CurveID{
			stdtls.X25519MLKEM768,
			stdtls.X25519,
			stdtls.CurveP256,
			stdtls.CurveP384,
		},
		NextProtos: protos,
		GetCertificate: func(hello *stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
			return s.getCertificate(table, hello)
		},
	}
	cfg.GetConfigForClient = func(hello *stdtls.ClientHelloInfo) (*stdtls.Config, error) {
		return s.configForClient(table(), cfg, hello), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) == 0 {
		s.keys = [][32]byte{newTicketKey()}
	}
	cfg.SetSessionTicketKeys(s.keys)
	s.configs = append(s.configs, cfg)
	return cfg
}

// configForClient returns the configuration of a handshake whose server
// name is a host with client certificate authentication (ingress-nginx's
// auth-tls-secret): base asking for a certificate, the host's authorities
// named in the request, the check left to the request (nginx answers a
// bad certificate with a 400, not a failed handshake). For every other
// host it returns nil: base as it is, no certificate asked for (a
// browser would prompt its user for one).
func (s *Store) configForClient(t *route.Table, base *stdtls.Config, hello *stdtls.ClientHelloInfo) *stdtls.Config {
	if t != nil && t.ClientValidation != nil {
		// A Gateway port's validation: the handshake itself fails
		// without a certificate of its authorities.
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = t.ClientValidation.Pool
		c.ClientAuth = stdtls.RequireAndVerifyClientCert
		if t.ClientValidation.InsecureFallback {
			c.ClientAuth = stdtls.RequestClientCert
		}
		// The store's ticket keys are shared by every listener: a
		// session verified against another port's authorities must not
		// be resumed here.
		c.SessionTicketsDisabled = true
		return c
	}
	if t == nil || hello.ServerName == "" {
		return nil
	}
	ca := t.ClientAuth(hello.ServerName)
	if !ca.Asks() {
		return nil
	}
	c := base.Clone()
	c.GetConfigForClient = nil
	c.ClientAuth = stdtls.RequestClientCert
	if ca.Verify != route.VerifyOptionalNoCA {
		c.ClientCAs = ca.Pool
	}
	return c
}

// View is the store choosing from another table: that of a Gateway
// listening on an address of its own (route.Listener). It shares the
// store's default certificate, ACME issuer, session-ticket keys and
// metrics.
type View struct {
	s     *Store
	table func() *route.Table
}

// View returns the store choosing from the table table returns (nil: a
// table with no TLS hosts). Its default certificate is that table's
// DefaultCertificate when it names one, else the store's.
func (s *Store) View(table func() *route.Table) *View {
	if table == nil {
		empty := route.Empty()
		table = func() *route.Table { return empty }
	}
	return &View{s: s, table: table}
}

// ServerConfig is Store.ServerConfig for v's table.
func (v *View) ServerConfig() *stdtls.Config { return v.s.serverConfig(v.table) }

// Covers is Store.Covers in v's table.
func (v *View) Covers(serverName, host string) bool { return v.s.covers(v.table(), serverName, host) }

// Run rotates the session-ticket keys of every Config ServerConfig returned,
// every TicketKeyRotation, until ctx is done. It returns nil.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(TicketKeyRotation)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.rotateTicketKeys()
		}
	}
}

// rotateTicketKeys puts a new key first and drops all but the two keys
// before it, so tickets issued under them still resume.
func (s *Store) rotateTicketKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([][32]byte, 0, ticketKeys)
	keys = append(keys, newTicketKey())
	keys = append(keys, s.keys[:min(len(s.keys), ticketKeys-1)]...)
	s.keys = keys
	for _, c := range s.configs {
		c.SetSessionTicketKeys(keys)
	}
}

func newTicketKey() [32]byte {
	var k [32]byte
	// crypto/rand.Read never fails; it crashes the program if the system
	// random source does.
	_, _ = rand.Read(k[:])
	return k
}

// ObserveHandshake counts a finished TLS handshake of the HTTPS listener:
// cs is the connection's state after Handshake returned err.
func (s *Store) ObserveHandshake(cs stdtls.ConnectionState, err error) {
	r := 0
	if err != nil {
		r = 1
	}
	v := 2
	switch cs.Version {
	case stdtls.VersionTLS12:
		v = 0
	case stdtls.VersionTLS13:
		v = 1
	}
	s.handshakes[r][v].Inc()
}
