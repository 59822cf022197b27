package tls

import (
	"context"
	stdtls "crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"golang.org/x/crypto/acme/autocert"

	"github.com/postern-dev/postern/proxy/route"
)

// selectFixture is a table with exact, wildcard, broken and ACME hosts,
// and the certificates it serves.
type selectFixture struct {
	table                 *route.Table
	def, exact, wild, dup *route.Certificate
}

func newSelectFixture(t *testing.T) *selectFixture {
	t.Helper()
	root := newTestCA(t, "root", nil)
	f := &selectFixture{
		def:   root.valid(t, "ecdsa", "default.invalid").routeCert(t, "ingress", "default"),
		exact: root.valid(t, "ecdsa", "a.example.com").routeCert(t, "ns", "exact"),
		wild:  root.valid(t, "ecdsa", "*.example.com").routeCert(t, "ns", "wild"),
		dup:   root.valid(t, "ecdsa", "x.example.org", "y.example.org").routeCert(t, "ns", "shared"),
	}
	f.table = tableOf(
		&route.TLSHost{Host: "a.example.com", Certificate: f.exact},
		&route.TLSHost{Host: "*.example.com", Certificate: f.wild},
		&route.TLSHost{Host: "x.example.org", Certificate: f.dup},
		&route.TLSHost{Host: "y.example.org", Certificate: f.dup},
		&route.TLSHost{Host: "broken.example.org"},
		&route.TLSHost{Host: "acme.example.org", ACME: true},
	)
	return f
}

// emptyACME returns an ACME issuer that holds no certificate and may not
// order one.
func emptyACME(t *testing.T, table func() *route.Table) *ACME {
	t.Helper()
	a, err := NewACME(ACMEOptions{
		Cache:        autocert.DirCache(t.TempDir()),
		Table:        table,
		CanOrder:     func() bool { return false },
		DirectoryURL: "http://127.0.0.1:1/directory",
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestGetCertificate(t *testing.T) {
	t.Parallel()
	f := newSelectFixture(t)
	withACME := NewStore(StoreOptions{Table: fixed(f.table), Default: f.def, ACME: emptyACME(t, fixed(f.table))})
	noACME := NewStore(StoreOptions{Table: fixed(f.table), Default: f.def})

	cases := []struct {
		name  string
		store *Store
		sni   string
		want  *route.Certificate
	}{
		{"exact", withACME, "a.example.com", f.exact},
		{"exact, any case, trailing dot", withACME, "A.Example.COM.", f.exact},
		{"wildcard", withACME, "b.example.com", f.wild},
		{"exact beats wildcard", withACME, "a.example.com", f.exact},
		{"wildcard covers one label only", withACME, "c.b.example.com", f.def},
		{"wildcard does not cover the apex", withACME, "example.com", f.def},
		{"unknown host", withACME, "unknown.example.net", f.def},
		{"no sni", withACME, "", f.def},
		{"ip literal", withACME, "192.0.2.1", f.def},
		{"ipv6 literal", withACME, "2001:db8::1", f.def},
		{"broken secret", withACME, "broken.example.org", f.def},
		{"acme host without certificate yet", withACME, "acme.example.org", f.def},
		{"acme host, acme off", noACME, "acme.example.org", f.def},
		{"shared certificate", withACME, "y.example.org", f.dup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.store.GetCertificate(&stdtls.ClientHelloInfo{ServerName: tc.sni})
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			if got != tc.want.Cert {
				t.Errorf("served %v, want %v", names(got), tc.want.Names)
			}
		})
	}
}

func names(c *stdtls.Certificate) []string {
	if c == nil || c.Leaf == nil {
		return nil
	}
	return c.Leaf.DNSNames
}

func TestDefaultCertificate(t *testing.T) {
	t.Parallel()
	f := newSelectFixture(t)
	s := NewStore(StoreOptions{Table: fixed(f.table)})
	if _, err := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "unknown.example.net"}); !errors.Is(err, ErrNoDefault) {
		t.Errorf("no default: error %v, want ErrNoDefault", err)
	}
	if got, err := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "a.example.com"}); err != nil || got != f.exact.Cert {
		t.Errorf("no default: a host with a certificate still gets it, got %v, %v", names(got), err)
	}
	s.SetDefault(f.def)
	s.SetDefault(nil) // ignored
	if got, err := s.GetCertificate(&stdtls.ClientHelloInfo{}); err != nil || got != f.def.Cert {
		t.Errorf("after SetDefault: got %v, %v", names(got), err)
	}
	if s.Default() != f.def {
		t.Errorf("Default() is not the certificate set")
	}
}

func TestGetCertificateDoesNotAllocate(t *testing.T) {
	f := newSelectFixture(t)
	s := NewStore(StoreOptions{Table: fixed(f.table), Default: f.def, ACME: emptyACME(t, fixed(f.table))})
	for _, sni := range []string{"a.example.com", "b.example.com", "unknown.example.net", "", "192.0.2.1", "acme.example.org"} {
		hello := &stdtls.ClientHelloInfo{ServerName: sni}
		if n := testing.AllocsPerRun(100, func() { _, _ = s.GetCertificate(hello) }); n != 0 {
			t.Errorf("GetCertificate(%q) allocates %v times", sni, n)
		}
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	f := newSelectFixture(t)
	s := NewStore(StoreOptions{Table: fixed(f.table), Default: f.def})
	cases := []struct {
		serverName, host string
		want             bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "A.example.com:8443", true},
		{"x.example.org", "y.example.org", true},        // one certificate for both
		{"b.example.com", "c.example.com", true},        // the same wildcard certificate
		{"a.example.com", "b.example.com", false},       // exact vs wildcard
		{"x.example.org", "a.example.com", false},       // different certificates
		{"a.example.com", "unknown.example.net", false}, // default vs exact
		{"unknown.example.net", "other.example.net", true},
		{"", "unknown.example.net", true}, // no SNI, default for both
		{"", "192.0.2.1:8443", true},
		{"", "broken.example.org", true},
		{"", "a.example.com", false}, // no SNI, but the host has its own certificate
	}
	for _, tc := range cases {
		if got := s.Covers(tc.serverName, tc.host); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.serverName, tc.host, got, tc.want)
		}
	}
}

// TestChallengeHandshake checks that a tls-alpn-01 validation handshake is
// answered with the challenge certificate from the shared cache, and that
// a normal handshake for the same host is not.
func TestChallengeHandshake(t *testing.T) {
	t.Parallel()
	f := newSelectFixture(t)
	root := newTestCA(t, "root", nil)
	token := root.valid(t, "ecdsa", "acme.example.org")
	cache := autocert.DirCache(t.TempDir())
	if err := cache.Put(context.Background(), "acme.example.org+token", token.autocertPEM(t)); err != nil {
		t.Fatal(err)
	}
	a, err := NewACME(ACMEOptions{Cache: cache, Table: fixed(f.table), CanOrder: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(StoreOptions{Table: fixed(f.table), Default: f.def, ACME: a})

	got, err := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "acme.example.org", SupportedProtos: []string{"acme-tls/1"}})
	if err != nil {
		t.Fatalf("challenge: %v", err)
	}
	if !sameLeaf(got, token.cert) {
		t.Errorf("challenge served %v, want the token certificate", names(got))
	}
	got, err = s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "acme.example.org", SupportedProtos: []string{"h2", "acme-tls/1"}})
	if err != nil || got != f.def.Cert {
		t.Errorf("normal handshake served %v, %v; want the default certificate", names(got), err)
	}
	if _, err := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "nothing.example.org", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
		t.Errorf("challenge without a token succeeded")
	}
}

func sameLeaf(c *stdtls.Certificate, want *x509.Certificate) bool {
	return c != nil && c.Leaf != nil && c.Leaf.Equal(want)
}

// TestCoversSections: in a table with Sections (a Gateway's port) a
// request may use a connection only when its Host selects the listener
// the handshake's server name did, even when the listeners share one
// certificate (GatewayHTTPSListenerDetectMisdirectedRequests).
func TestCoversSections(t *testing.T) {
	t.Parallel()
	f := newSelectFixture(t)
	tbl := tableOf(
		&route.TLSHost{Host: "second.example.org", Certificate: f.dup},
		&route.TLSHost{Host: "*.wildcard.org", Certificate: f.dup},
		&route.TLSHost{Host: "fourth.wildcard.org", Certificate: f.dup},
	)
	tbl.DefaultCertificate = f.dup // the listener without a hostname
	for _, s := range []struct{ name, host string }{{"https", ""}, {"second", "second.example.org"}, {"wildcard", "*.wildcard.org"}, {"fourth", "fourth.wildcard.org"}} {
		tbl.Sections = append(tbl.Sections, &route.Section{Listener: s.name, Hostname: s.host, Table: route.Empty()})
	}
	s := NewStore(StoreOptions{Table: fixed(tbl), Default: f.def})
	for _, tc := range []struct {
		serverName, host string
		want             bool
	}{
		{"example.org", "example.org", true},
		{"example.org", "second.example.org", false},
		{"example.org", "unknown.example.org", true}, // both the listener without a hostname
		{"second.example.org", "example.org", false},
		{"third.wildcard.org", "fifth.wildcard.org", true},
		{"third.wildcard.org", "fourth.wildcard.org", false},
		{"fourth.wildcard.org", "fifth.wildcard.org", false},
		{"unknown.example.org", "example.org", true},
	} {
		if got := s.View(fixed(tbl)).Covers(tc.serverName, tc.host); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.serverName, tc.host, got, tc.want)
		}
	}
	tbl.Sections = nil
	if !s.View(fixed(tbl)).Covers("third.wildcard.org", "fourth.wildcard.org") {
		t.Error("a table without sections refuses a host of the same certificate")
	}
}
