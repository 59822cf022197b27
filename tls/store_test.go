package tls

import (
	"context"
	stdtls "crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern-dev/postern/proxy/route"
)

// tlsServer accepts connections on loopback, handshakes them with cfg,
// reports each handshake to the store, writes one byte (so that TLS 1.3
// clients receive their session tickets) and closes. done receives one
// value per finished handshake.
type tlsServer struct {
	addr string
	done chan struct{}
}

func startTLSServer(tb testing.TB, s *Store, cfg *stdtls.Config) *tlsServer {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &tlsServer{addr: ln.Addr().String(), done: make(chan struct{}, 1024)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				tc := stdtls.Server(conn, cfg)
				err := tc.HandshakeContext(context.Background())
				s.ObserveHandshake(tc.ConnectionState(), err)
				if err == nil {
					_, _ = tc.Write([]byte{'x'})
				}
				select {
				case srv.done <- struct{}{}:
				default:
				}
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return srv
}

// dial handshakes with the server and reads its byte; it returns the
// connection state.
func (srv *tlsServer) dial(tb testing.TB, cfg *stdtls.Config) (stdtls.ConnectionState, error) {
	tb.Helper()
	conn, err := (&stdtls.Dialer{Config: cfg}).DialContext(context.Background(), "tcp", srv.addr)
	if err != nil {
		return stdtls.ConnectionState{}, err
	}
	defer conn.Close()
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		return stdtls.ConnectionState{}, err
	}
	return conn.(*stdtls.Conn).ConnectionState(), nil
}

type handshakeFixture struct {
	store *Store
	reg   *prometheus.Registry
	srv   *tlsServer
	roots *x509.CertPool
	cert  *route.Certificate
}

func newHandshakeFixture(t *testing.T) *handshakeFixture {
	t.Helper()
	root := newTestCA(t, "root", nil)
	inter := newTestCA(t, "intermediate", root)
	cert := inter.valid(t, "ecdsa", "a.example.com").routeCert(t, "ns", "a")
	def, err := SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := NewStore(StoreOptions{
		Table:    fixed(tableOf(&route.TLSHost{Host: "a.example.com", Certificate: cert})),
		Default:  def,
		Registry: reg,
	})
	return &handshakeFixture{store: s, reg: reg, srv: startTLSServer(t, s, s.ServerConfig()), roots: root.pool(), cert: cert}
}

func (f *handshakeFixture) client() *stdtls.Config {
	return &stdtls.Config{RootCAs: f.roots, ServerName: "a.example.com", NextProtos: []string{"h2", "http/1.1"}}
}

func TestHandshake(t *testing.T) {
	f := newHandshakeFixture(t)

	tls12 := f.client()
	tls12.MaxVersion = stdtls.VersionTLS12
	cbcOnly := f.client()
	cbcOnly.MaxVersion = stdtls.VersionTLS12
	cbcOnly.CipherSuites = []uint16{stdtls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, stdtls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	tls11 := f.client()
	tls11.MinVersion, tls11.MaxVersion = stdtls.VersionTLS10, stdtls.VersionTLS11
	http1 := f.client()
	http1.NextProtos = []string{"http/1.1"}

	cases := []struct {
		name    string
		cfg     *stdtls.Config
		wantErr bool
		version uint16
		proto   string
	}{
		{name: "tls 1.3 negotiates h2", cfg: f.client(), version: stdtls.VersionTLS13, proto: "h2"},
		{name: "tls 1.2 negotiates h2", cfg: tls12, version: stdtls.VersionTLS12, proto: "h2"},
		{name: "http/1.1 only", cfg: http1, version: stdtls.VersionTLS13, proto: "http/1.1"},
		{name: "tls 1.1 refused", cfg: tls11, wantErr: true},
		{name: "cbc suites refused", cfg: cbcOnly, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := f.srv.dial(t, tc.cfg)
			<-f.srv.done
			if tc.wantErr {
				if err == nil {
					t.Fatalf("handshake succeeded with version %x, suite %s", cs.Version, stdtls.CipherSuiteName(cs.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.Version != tc.version {
				t.Errorf("version %x, want %x", cs.Version, tc.version)
			}
			if cs.NegotiatedProtocol != tc.proto {
				t.Errorf("ALPN %q, want %q", cs.NegotiatedProtocol, tc.proto)
			}
			if !cs.PeerCertificates[0].Equal(f.cert.Cert.Leaf) || len(cs.PeerCertificates) != 2 {
				t.Errorf("served %d certificates for %v", len(cs.PeerCertificates), cs.PeerCertificates[0].DNSNames)
			}
			if name := stdtls.CipherSuiteName(cs.CipherSuite); cs.Version == stdtls.VersionTLS12 && !strings.HasPrefix(name, "TLS_ECDHE_") {
				t.Errorf("tls 1.2 suite %s", name)
			}
		})
	}

	checkNoSNIGetsDefault(t, f)
	checkHandshakeCounts(t, f)
}

// checkNoSNIGetsDefault checks that a client with no SNI gets the default
// certificate, which it does not trust.
func checkNoSNIGetsDefault(t *testing.T, f *handshakeFixture) {
	t.Helper()
	noSNI := &stdtls.Config{RootCAs: f.roots, InsecureSkipVerify: true}
	cs, err := f.srv.dial(t, noSNI)
	<-f.srv.done
	if err != nil {
		t.Fatal(err)
	}
	if cn := cs.PeerCertificates[0].Subject.CommonName; cn != DefaultCommonName {
		t.Errorf("no SNI: served %q", cn)
	}
}

// checkHandshakeCounts checks the handshake counter after TestHandshake's
// dials. The TLS 1.1 client offers no version the server accepts, so
// nothing is negotiated; the CBC-only client does agree on TLS 1.2 first.
func checkHandshakeCounts(t *testing.T, f *handshakeFixture) {
	t.Helper()
	want := `
# HELP postern_tls_handshakes_total TLS handshakes on the HTTPS listener, by result (ok or error) and negotiated version (1.2, 1.3, or empty when none was).
# TYPE postern_tls_handshakes_total counter
postern_tls_handshakes_total{result="error",version=""} 1
postern_tls_handshakes_total{result="error",version="1.2"} 1
postern_tls_handshakes_total{result="error",version="1.3"} 0
postern_tls_handshakes_total{result="ok",version=""} 0
postern_tls_handshakes_total{result="ok",version="1.2"} 1
postern_tls_handshakes_total{result="ok",version="1.3"} 3
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "postern_tls_handshakes_total"); err != nil {
		t.Error(err)
	}
}

func TestSessionResumptionAcrossRotation(t *testing.T) {
	for _, version := range []uint16{stdtls.VersionTLS12, stdtls.VersionTLS13} {
		t.Run(stdtls.VersionName(version), func(t *testing.T) {
			f := newHandshakeFixture(t)
			cfg := f.client()
			cfg.MinVersion, cfg.MaxVersion = version, version
			cfg.ClientSessionCache = stdtls.NewLRUClientSessionCache(8)
			connect := func() bool {
				t.Helper()
				cs, err := f.srv.dial(t, cfg)
				<-f.srv.done
				if err != nil {
					t.Fatal(err)
				}
				return cs.DidResume
			}
			if connect() {
				t.Fatal("first connection resumed")
			}
			if !connect() {
				t.Fatal("second connection did not resume")
			}
			// Tickets survive two rotations: their key is one of the
			// previous two.
			f.store.rotateTicketKeys()
			f.store.rotateTicketKeys()
			if !connect() {
				t.Fatal("did not resume after two key rotations")
			}
			// Three more and no key the client's ticket could be under is
			// left: the connection must be a full handshake.
			f.store.rotateTicketKeys()
			f.store.rotateTicketKeys()
			f.store.rotateTicketKeys()
			if connect() {
				t.Fatal("resumed with a ticket whose key was dropped")
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	t.Parallel()
	def, err := SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plain := NewStore(StoreOptions{Default: def}).ServerConfig()
	if want := []string{"h2", "http/1.1"}; !slices.Equal(plain.NextProtos, want) {
		t.Errorf("NextProtos = %q, want %q", plain.NextProtos, want)
	}
	if plain.MinVersion != stdtls.VersionTLS12 || plain.SessionTicketsDisabled || plain.GetCertificate == nil {
		t.Errorf("MinVersion %x, tickets disabled %v, GetCertificate set %v", plain.MinVersion, plain.SessionTicketsDisabled, plain.GetCertificate != nil)
	}
	for _, id := range plain.CipherSuites {
		name := stdtls.CipherSuiteName(id)
		if aead := strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20"); !strings.HasPrefix(name, "TLS_ECDHE_") || !aead {
			t.Errorf("cipher suite %s is not ECDHE with AEAD", name)
		}
	}
	withACME := NewStore(StoreOptions{Default: def, ACME: emptyACME(t, route.Empty)}).ServerConfig()
	if want := []string{"h2", "http/1.1", "acme-tls/1"}; !slices.Equal(withACME.NextProtos, want) {
		t.Errorf("with ACME: NextProtos = %q, want %q", withACME.NextProtos, want)
	}
}

func TestRunStops(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}
