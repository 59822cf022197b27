package route

import (
	"crypto/x509"
	"strings"
)

// ClientVerify is when a host asks TLS clients for a certificate and what
// a missing or invalid one does (ingress-nginx's auth-tls-verify-client,
// nginx's ssl_verify_client).
type ClientVerify string

// The modes of ClientVerify.
const (
	// VerifyOn asks for a certificate; none, or an invalid one, is
	// answered 400.
	VerifyOn ClientVerify = "on"
	// VerifyOptional asks for one; none passes, an invalid one is 400.
	VerifyOptional ClientVerify = "optional"
	// VerifyOptionalNoCA asks for one and never refuses: the result goes
	// to the endpoints.
	VerifyOptionalNoCA ClientVerify = "optional_no_ca"
	// VerifyOff asks for none.
	VerifyOff ClientVerify = "off"
)

// ClientAuth is a host's client certificate authentication (ingress-nginx's
// auth-tls-*, set for the whole host): the TLS handshake asks for a
// certificate (VirtualHost.ClientAuth), and each request of the host's
// routes is checked (Policy.ClientAuth) against the authorities, to the
// depth, and the revocation lists given. The result goes to the endpoints
// in ssl-client-verify, ssl-client-subject-dn and ssl-client-issuer-dn
// (and ssl-client-cert), replacing what a client sent under those names.
type ClientAuth struct {
	// Source names the Secret of the authorities ("Secret ns/name").
	Source string       `json:"source"`
	Verify ClientVerify `json:"verify"`
	// Depth is the most certificates above the client's own a chain may
	// have (nginx's ssl_verify_depth; 1: issued by a trusted authority).
	Depth int `json:"depth"`
	// ErrorPage, when set, is where a refused certificate is redirected
	// (302) instead of the 400.
	ErrorPage string `json:"errorPage,omitempty"`
	// PassCertificate sends the client's certificate, URL-escaped PEM, in
	// ssl-client-cert.
	PassCertificate bool `json:"passCertificate,omitempty"`
	// MatchCN, when set, is a regular expression the subject's DN must
	// match (unanchored), else 403.
	MatchCN string `json:"matchCN,omitempty"`
	// Authorities are the subjects of the trusted certificates, for the
	// table; Pool holds them, CRLs the revocation lists (ca.crl).
	Authorities []string               `json:"authorities"`
	Pool        *x509.CertPool         `json:"-"`
	CRLs        []*x509.RevocationList `json:"-"`
}

// Asks reports whether a handshake asks for a client certificate.
func (ca *ClientAuth) Asks() bool { return ca != nil && ca.Verify != VerifyOff }

// ClientAuth returns the client certificate authentication of the virtual
// host a TLS server name belongs to (exact host, then one-label
// wildcard); nil when it has none.
func (t *Table) ClientAuth(serverName string) *ClientAuth {
	h := NormalizeHost(serverName)
	if vh := t.exact[h]; vh != nil && vh.ClientAuth != nil {
		return vh.ClientAuth
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if vh := t.wildcard[h[i+1:]]; vh != nil {
			return vh.ClientAuth
		}
	}
	return nil
}

// Passthrough returns the backend the TLS connections for serverName go
// to unopened: that of the route for "/" of its virtual host when the
// host has Passthrough (exact host, then one-label wildcard); nil when
// they are terminated as usual.
func (t *Table) Passthrough(serverName string) *Backend {
	h := NormalizeHost(serverName)
	vh := t.exact[h]
	if vh == nil {
		if i := strings.IndexByte(h, '.'); i > 0 {
			vh = t.wildcard[h[i+1:]]
		}
	}
	if vh == nil || !vh.Passthrough {
		return nil
	}
	r := vh.Match("/", nil)
	if r == nil {
		return nil
	}
	for _, wb := range r.Backends {
		if wb.Weight > 0 && !wb.ErrorPage {
			return wb.Backend
		}
	}
	return nil
}

// ClientValidation is the client certificate validation of a Gateway's
// TLS port (spec.tls.frontend): every handshake asks for a certificate,
// which must chain to Pool unless InsecureFallback lets any certificate,
// or none, through.
type ClientValidation struct {
	// Source names the ConfigMaps of the authorities.
	Source string `json:"source"`
	// InsecureFallback is the AllowInsecureFallback mode.
	InsecureFallback bool           `json:"insecureFallback,omitempty"`
	Authorities      []string       `json:"authorities"`
	Pool             *x509.CertPool `json:"-"`
}
