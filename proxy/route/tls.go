package route

import (
	"cmp"
	"crypto/tls"
	"slices"
	"strings"
	"time"
)

// Certificate is a TLS certificate that was parsed and checked when the
// table was built (chain parses, key matches, not expired), ready to serve.
type Certificate struct {
	// Source is the Secret the certificate came from.
	Source Source `json:"source"`
	// Names are the leaf's DNS names, sorted.
	Names []string `json:"names"`
	// NotAfter is when the leaf expires.
	NotAfter time.Time `json:"notAfter"`
	// Cert is what a handshake serves, with Leaf set.
	Cert *tls.Certificate `json:"-"`
}

// TLSHost is the HTTPS configuration of one host named in an Ingress's
// spec.tls.
type TLSHost struct {
	// Host is the lower-case host name, or "*.example.com" for a wildcard.
	Host string `json:"host"`
	// Certificate is served for the host; nil means the default certificate
	// (the Secret is missing or broken, or ACME has not issued one yet).
	Certificate *Certificate `json:"certificate,omitempty"`
	// ACME is true when the certificate comes from the ACME issuer.
	ACME bool `json:"acme,omitempty"`
	// Redirect sends plain HTTP requests for the host to HTTPS with 308.
	Redirect bool `json:"redirect,omitempty"`
	// HSTS is the Strict-Transport-Security header value sent on HTTPS
	// responses; empty sends none.
	HSTS string `json:"hsts,omitempty"`
	// Source is the Ingress that declared the host.
	Source Source `json:"source"`
}

// WithTLS installs the HTTPS configuration of hosts into t and returns t.
// It is part of building a table and must be called before the table is
// published; when a host appears twice the first wins.
func (t *Table) WithTLS(hosts []*TLSHost) *Table {
	t.TLS = make([]*TLSHost, 0, len(hosts))
	t.tlsExact = make(map[string]*TLSHost)
	t.tlsWildcard = make(map[string]*TLSHost)
	for _, h := range hosts {
		m, key := t.tlsExact, h.Host
		if suffix, ok := strings.CutPrefix(h.Host, "*."); ok {
			m, key = t.tlsWildcard, suffix
		}
		if _, dup := m[key]; dup || h.Host == "" {
			continue
		}
		m[key] = h
		t.TLS = append(t.TLS, h)
	}
	slices.SortFunc(t.TLS, func(a, b *TLSHost) int {
		if c := cmp.Compare(hostRank(a.Host), hostRank(b.Host)); c != 0 {
			return c
		}
		return strings.Compare(a.Host, b.Host)
	})
	return t
}

// TLSHost returns the HTTPS configuration for host (a TLS server name or a
// Host header, any case, port allowed): the exact host first, then the
// one-label wildcard. Nil means the host is not named in any spec.tls.
func (t *Table) TLSHost(host string) *TLSHost {
	if len(t.tlsExact) == 0 && len(t.tlsWildcard) == 0 {
		return nil
	}
	h := NormalizeHost(host)
	if th, ok := t.tlsExact[h]; ok {
		return th
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if th, ok := t.tlsWildcard[h[i+1:]]; ok {
			return th
		}
	}
	return nil
}
