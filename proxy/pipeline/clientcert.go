package pipeline

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// Client certificates (route.ClientAuth), as ingress-nginx's auth-tls-*:
// the handshake of a host that asks for one requests a certificate
// without checking it (the TLS store), and each request of the host's
// routes is checked here, first of the route's policies, as nginx checks
// ssl_verify_client before anything else: a missing or invalid
// certificate is answered 400 (or 302 to the error page), a subject the
// match-cn expression does not match 403. The endpoints get the result
// in the ssl-client-* fields, never what a client sent under those names.
// A chain's result is remembered for a few minutes, keyed by its bytes: a
// keep-alive connection pays the signature checks once.

// The fields the result goes in.
const (
	headerClientVerify  = "Ssl-Client-Verify"
	headerClientSubject = "Ssl-Client-Subject-Dn"
	headerClientIssuer  = "Ssl-Client-Issuer-Dn"
	headerClientCert    = "Ssl-Client-Cert"
)

// clientFields are the fields the result goes in; a client's own are
// dropped.
var clientFields = [...]string{headerClientVerify, headerClientSubject, headerClientIssuer, headerClientCert}

// Bounds of the results remembered.
const (
	maxCertResults = 4096
	certResultTTL  = 5 * time.Minute
)

// clientCert is the route policy of route.ClientAuth.
type clientCert struct {
	ca    *route.ClientAuth
	match *regexp.Regexp // nil: no match-cn

	mu      sync.Mutex
	results map[[sha256.Size]byte]certResult
}

// certResult is what the check of one chain found.
type certResult struct {
	verify          string // SUCCESS or FAILED:<reason>
	subject, issuer string
	escapedPEM      string // the leaf, for ssl-client-cert
	expires         time.Time
}

func newClientCert(rt *route.Route) (*clientCert, bool) {
	if rt.Policy == nil || rt.Policy.ClientAuth == nil {
		return nil, false
	}
	c := &clientCert{ca: rt.Policy.ClientAuth, results: make(map[[sha256.Size]byte]certResult)}
	if m := c.ca.MatchCN; m != "" {
		// The controller checked it compiles.
		c.match, _ = regexp.Compile(m)
	}
	return c, true
}

func (c *clientCert) Request(x *Exchange) {
	for _, f := range clientFields {
		x.Req.Del(f)
	}
	r := certResult{verify: "NONE"}
	if len(x.PeerCertificates) > 0 && c.ca.Verify != route.VerifyOff {
		r = c.result(x.PeerCertificates)
	}
	x.Req.Set(headerClientVerify, r.verify)
	if r.subject != "" {
		x.Req.Set(headerClientSubject, r.subject)
		x.Req.Set(headerClientIssuer, r.issuer)
		if c.ca.PassCertificate {
			x.Req.Set(headerClientCert, r.escapedPEM)
		}
	}
	refused := false
	switch c.ca.Verify {
	case route.VerifyOn:
		refused = r.verify != "SUCCESS"
	case route.VerifyOptional:
		refused = r.verify != "SUCCESS" && r.verify != "NONE"
	}
	if refused && !x.Secure && r.verify == "NONE" {
		// Plain HTTP carries no certificate: the route's redirect to
		// HTTPS answers it, else clientCertPlain refuses it.
		x.plainNoCert = true
		refused = false
	}
	switch {
	case refused:
		c.refuse(x, r.verify)
	case c.match != nil && !c.match.MatchString(r.subject):
		x.fail(http.StatusForbidden, "auth-tls-match-cn")
	}
}

// refuse answers a request whose certificate is missing or invalid: 400,
// or the redirect to the error page.
func (c *clientCert) refuse(x *Exchange, verify string) {
	if p := c.ca.ErrorPage; p != "" {
		x.Reply = redirectReply(http.StatusFound, p, "auth-tls-error-page: "+verify)
		return
	}
	x.fail(http.StatusBadRequest, "auth-tls: "+verify)
}

// clientCertPlain runs after the redirect to HTTPS: a plain HTTP request
// of a host that wants a certificate and that was not redirected is
// refused, never served without one.
type clientCertPlain struct{ c *clientCert }

func (p clientCertPlain) Request(x *Exchange) {
	if x.plainNoCert {
		p.c.refuse(x, "NONE")
	}
}

// result returns the check of chain, remembered.
func (c *clientCert) result(chain []*x509.Certificate) certResult {
	h := sha256.New()
	for _, cert := range chain {
		h.Write(cert.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	now := time.Now()
	c.mu.Lock()
	r, ok := c.results[k]
	c.mu.Unlock()
	if ok && now.Before(r.expires) {
		return r
	}
	r = c.check(chain, now)
	c.mu.Lock()
	if len(c.results) >= maxCertResults {
		for old := range c.results {
			delete(c.results, old)
			break
		}
	}
	c.results[k] = r
	c.mu.Unlock()
	return r
}

// check verifies chain (the client's certificate first) at now.
func (c *clientCert) check(chain []*x509.Certificate, now time.Time) certResult {
	leaf := chain[0]
	r := certResult{subject: dnField(leaf.Subject.String()), issuer: dnField(leaf.Issuer.String()), expires: now.Add(certResultTTL)}
	if leaf.NotAfter.Before(r.expires) {
		r.expires = leaf.NotAfter
	}
	if c.ca.PassCertificate {
		r.escapedPEM = escapeURIComponent(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})))
	}
	inter := x509.NewCertPool()
	for _, cert := range chain[1:] {
		inter.AddCert(cert)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: c.ca.Pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		r.verify = "FAILED:" + verifyReason(err)
		return r
	}
	reason := "certificate chain too long"
	for _, ch := range chains {
		if len(ch)-1 > max(c.ca.Depth, 0) {
			continue
		}
		if why := c.revoked(ch, now); why != "" {
			reason = why
			continue
		}
		r.verify = "SUCCESS"
		return r
	}
	r.verify = "FAILED:" + reason
	return r
}

// revoked returns why a certificate of ch is revoked by one of the CRLs,
// or "".
func (c *clientCert) revoked(ch []*x509.Certificate, now time.Time) string {
	for i, cert := range ch[:len(ch)-1] {
		issuer := ch[i+1]
		for _, crl := range c.ca.CRLs {
			if crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
				return "CRL has expired"
			}
			if serialIn(crl, cert.SerialNumber) {
				return "certificate revoked"
			}
		}
	}
	return ""
}

func serialIn(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// verifyReason is the reason of a failed check, in OpenSSL's words as
// nginx's $ssl_client_verify gives them.
func verifyReason(err error) string {
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv):
		switch inv.Reason {
		case x509.Expired:
			return "certificate has expired"
		case x509.IncompatibleUsage:
			return "unsupported certificate purpose"
		}
		return "certificate verify failed"
	case errors.As(err, &unknown):
		return "unable to get local issuer certificate"
	}
	return "certificate verify failed"
}

// dnField returns a DN as a header field value: control characters (a
// certificate may hold any) escaped as \XX, as OpenSSL's RFC 2253 printing
// does, so that no certificate can split the head sent upstream.
func dnField(dn string) string {
	if fieldSafe(dn) && !strings.ContainsRune(dn, '\t') {
		return dn
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if c < 0x20 || c == 0x7f {
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
