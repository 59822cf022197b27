package tls

import (
	stdtls "crypto/tls"
	"errors"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme"

	"github.com/postern-dev/postern/proxy/route"
)

// ErrNoDefault is returned by GetCertificate when the handshake needs the
// default certificate and the store has none.
var ErrNoDefault = errors.New("no default certificate configured")

// GetCertificate returns the certificate for a TLS handshake; it is the
// crypto/tls Config.GetCertificate hook. The server name is looked up in
// the live table (exact host, then one-label wildcard): a host with a
// certificate gets it, an ACME host gets its ACME certificate once issued,
// and everything else (no SNI, an IP address, an unknown host, a broken
// Secret) gets the default certificate. ACME tls-alpn-01 validation
// handshakes are answered by the ACME issuer. In the common case it does
// not allocate.
func (s *Store) GetCertificate(hello *stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
	return s.getCertificate(s.table, hello)
}

// getCertificate is GetCertificate from the table table returns.
func (s *Store) getCertificate(table func() *route.Table, hello *stdtls.ClientHelloInfo) (*stdtls.Certificate, error) {
	if s.acme != nil && isChallenge(hello) {
		return s.acme.GetCertificate(hello)
	}
	if c := s.pick(table(), hello.ServerName); c != nil {
		return c, nil
	}
	return nil, ErrNoDefault
}

// Covers reports whether a request for host may be served on a connection
// whose handshake named serverName (RFC 9110 §7.4; the proxy answers 421
// Misdirected Request when it may not). It is true when host is
// serverName, or when both select the very same certificate, so that HTTP/2
// clients can keep coalescing requests for hosts that share a certificate
// (RFC 9113 §9.1.1). Without SNI it is true only for hosts that are served
// the default certificate.
func (s *Store) Covers(serverName, host string) bool { return s.covers(s.table(), serverName, host) }

// covers is Covers in table t.
func (s *Store) covers(t *route.Table, serverName, host string) bool {
	h := route.NormalizeHost(host)
	if serverName == "" {
		return sameCert(s.pick(t, h), s.defaultCert(t))
	}
	sn := route.NormalizeHost(serverName)
	if h == sn {
		return true
	}
	if t != nil && len(t.Sections) > 0 && t.Section(h) != t.Section(sn) {
		// A Gateway's listeners: the Host must select the listener the
		// handshake did, whatever certificates they share.
		return false
	}
	if t != nil && t.ClientAuth(h) != t.ClientAuth(sn) {
		// The connection's handshake asked for the client certificate
		// of another host's authorities, or for none: the client must
		// connect anew for this host.
		return false
	}
	return sameCert(s.pick(t, sn), s.pick(t, h))
}

// pick returns the certificate of table t for server name name, or nil
// when it would be the default certificate and there is none.
func (s *Store) pick(t *route.Table, name string) *stdtls.Certificate {
	if name == "" || isIPLiteral(name) || t == nil {
		return s.defaultCert(t)
	}
	th := t.TLSHost(name)
	switch {
	case th == nil:
	case th.Certificate != nil && th.Certificate.Cert != nil:
		return th.Certificate.Cert
	case th.ACME && s.acme != nil:
		c, err := s.acme.certificate(name)
		if err == nil && c != nil {
			return c
		}
		if ce := s.log.Check(zap.DebugLevel, "no acme certificate for the host yet, serving the default certificate"); ce != nil {
			ce.Write(zap.String("host", name), zap.Error(err))
		}
	}
	return s.defaultCert(t)
}

// defaultCert returns the default certificate of table t: that of a
// Gateway listener's table when it names one, else the store's.
func (s *Store) defaultCert(t *route.Table) *stdtls.Certificate {
	if t != nil && t.DefaultCertificate != nil && t.DefaultCertificate.Cert != nil && t != s.table() {
		return t.DefaultCertificate.Cert
	}
	if d := s.def.Load(); d != nil {
		return d.Cert
	}
	return nil
}

// sameCert reports whether a and b are the same certificate. ACME
// certificates come out of autocert as a fresh tls.Certificate each time,
// around the same parsed leaf, so the leaf decides for them.
func sameCert(a, b *stdtls.Certificate) bool {
	if a == nil || b == nil {
		return false
	}
	return a == b || a.Leaf != nil && a.Leaf == b.Leaf
}

// isChallenge reports whether hello is an ACME tls-alpn-01 validation
// handshake (RFC 8737 §3): the CA offers acme-tls/1 and nothing else.
func isChallenge(hello *stdtls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// isIPLiteral reports whether a server name is an IP address, which
// clients must not send in SNI (RFC 6066 §3) and which never names a host.
// It does not allocate.
func isIPLiteral(name string) bool {
	if strings.IndexByte(name, ':') >= 0 {
		return true
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
