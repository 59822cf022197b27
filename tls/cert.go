package tls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	stdtls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// maxChain bounds the number of certificates ParseKeyPair accepts in one
// bundle. Real chains hold two to four; the bound keeps a hostile Secret
// from making table builds slow.
const maxChain = 32

// DefaultCommonName is the subject common name of the certificate
// SelfSigned makes.
const DefaultCommonName = "Postern Default Certificate"

// ErrKeyMismatch is returned (wrapped) by ParseKeyPair when no certificate
// in the bundle belongs to the private key.
var ErrKeyMismatch = errors.New("private key does not match the certificate")

// ParseKeyPair checks the PEM certificate bundle and private key of a
// kubernetes.io/tls Secret (its tls.crt and tls.key) and returns them ready
// to serve. source names the Secret.
//
// The key may be PKCS#1 RSA, PKCS#8 (RSA, ECDSA or Ed25519) or SEC1 EC.
// The leaf (the certificate whose public key matches the key) must be valid
// at now. When the leaf is not the first certificate of the bundle, the
// bundle is reordered so that it serves correctly: the leaf first, then its
// issuer, that certificate's issuer and so on; certificates outside that
// chain keep their relative order at the end. Errors are lower-case
// sentences fit for an Event on the Ingress.
func ParseKeyPair(source route.Source, certPEM, keyPEM []byte, now time.Time) (*route.Certificate, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := findLeaf(certs, key.Public())
	if leaf < 0 {
		if len(certs) == 1 {
			return nil, ErrKeyMismatch
		}
		return nil, fmt.Errorf("%w: none of the %d certificates in the bundle belongs to the key", ErrKeyMismatch, len(certs))
	}
	chain := orderChain(certs, leaf)
	c := chain[0]
	if now.Before(c.NotBefore) {
		// The message names no "now": it becomes a Problem, and a message
		// that changed with every build would be a new Event each time.
		return nil, fmt.Errorf("certificate is not valid yet: valid from %s", stamp(c.NotBefore))
	}
	if now.After(c.NotAfter) {
		return nil, fmt.Errorf("certificate expired at %s", stamp(c.NotAfter))
	}
	raw := make([][]byte, len(chain))
	for i, x := range chain {
		raw[i] = x.Raw
	}
	return &route.Certificate{
		Source:   source,
		Names:    certNames(c),
		NotAfter: c.NotAfter,
		Cert:     &stdtls.Certificate{Certificate: raw, PrivateKey: key, Leaf: c},
	}, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// parseCertificates decodes every CERTIFICATE block of a PEM bundle. Text
// around the blocks is ignored, as openssl and crypto/tls ignore it.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("certificate data holds a %q block: the private key belongs in tls.key, not tls.crt", b.Type)
			}
			return nil, fmt.Errorf("certificate data holds a %q PEM block, want CERTIFICATE", b.Type)
		}
		if len(certs) == maxChain {
			return nil, fmt.Errorf("certificate bundle holds more than %d certificates", maxChain)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d of the bundle: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM-encoded certificate found in the certificate data")
	}
	return certs, nil
}

// parsePrivateKey decodes the first private key block of keyPEM, skipping
// the EC PARAMETERS block "openssl ecparam -genkey" writes before it.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	var b *pem.Block
	for {
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM-encoded private key found in the key data")
		}
		switch {
		case b.Type == "EC PARAMETERS":
			continue
		case b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, errors.New("the private key is encrypted; store it unencrypted in the Secret")
		case b.Type == "CERTIFICATE":
			return nil, errors.New("key data holds a CERTIFICATE block: the certificate belongs in tls.crt, the private key in tls.key")
		case !strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("key data holds a %q PEM block, want a PRIVATE KEY", b.Type)
		}
		break
	}
	key, err := parseKeyDER(b.Type, b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return key, nil
}

// parseKeyDER tries the encoding the PEM type names first, then the others:
// mislabelled keys are common and harmless.
func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	parsers := []func([]byte) (crypto.Signer, error){parsePKCS8, parsePKCS1, parseSEC1}
	switch typ {
	case "RSA PRIVATE KEY":
		parsers[0], parsers[1] = parsers[1], parsers[0]
	case "EC PRIVATE KEY":
		parsers[0], parsers[2] = parsers[2], parsers[0]
	}
	var first error
	for _, p := range parsers {
		k, err := p(der)
		if err == nil {
			return k, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func parsePKCS1(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func parseSEC1(der []byte) (crypto.Signer, error) {
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported PKCS#8 key type %T (want RSA, ECDSA or Ed25519)", k)
	}
}

// findLeaf returns the index of the certificate whose public key is pub,
// preferring one that is not a CA; -1 when there is none.
func findLeaf(certs []*x509.Certificate, pub crypto.PublicKey) int {
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return -1
	}
	found := -1
	for i, c := range certs {
		if !eq.Equal(c.PublicKey) {
			continue
		}
		if !c.IsCA {
			return i
		}
		if found < 0 {
			found = i
		}
	}
	return found
}

// orderChain returns the leaf followed by its issuers, each the issuer of
// the one before, then whatever else the bundle held in its original order.
// Exact duplicates are dropped. Issuers are matched by name and, when both
// certificates carry them, by key identifier, which is cheap and needs no
// signature checks.
func orderChain(certs []*x509.Certificate, leaf int) []*x509.Certificate {
	rest := make([]*x509.Certificate, 0, len(certs)-1)
	for i, c := range certs {
		same := func(o *x509.Certificate) bool { return bytes.Equal(o.Raw, c.Raw) }
		if i == leaf || same(certs[leaf]) || slices.ContainsFunc(rest, same) {
			continue
		}
		rest = append(rest, c)
	}
	chain := append(make([]*x509.Certificate, 0, len(rest)+1), certs[leaf])
	for cur := certs[leaf]; len(rest) > 0 && !isSelfIssued(cur); {
		next := -1
		for i, c := range rest {
			if !bytes.Equal(c.RawSubject, cur.RawIssuer) {
				continue
			}
			if len(cur.AuthorityKeyId) > 0 && len(c.SubjectKeyId) > 0 && !bytes.Equal(cur.AuthorityKeyId, c.SubjectKeyId) {
				continue
			}
			next = i
			break
		}
		if next < 0 {
			break
		}
		cur = rest[next]
		chain = append(chain, cur)
		rest = slices.Delete(rest, next, next+1)
	}
	return append(chain, rest...)
}

func isSelfIssued(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, c.RawIssuer) }

// certNames returns the leaf's DNS names, lower-cased, sorted and without
// duplicates, or its common name when it has none.
func certNames(c *x509.Certificate) []string {
	names := make([]string, 0, len(c.DNSNames))
	for _, n := range c.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

// SelfSigned returns a new self-signed ECDSA P-256 certificate, valid for a
// year from now, for use as the default certificate when none is
// configured. Its Source is {Name: "self-signed"}.
func SelfSigned(now time.Time) (*route.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate default certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate default certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: DefaultCommonName, Organization: []string{"Postern"}},
		// An hour of slack for clients whose clock is slightly behind.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create default certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse default certificate: %w", err)
	}
	return &route.Certificate{
		Source:   route.Source{Name: "self-signed"},
		Names:    certNames(leaf),
		NotAfter: leaf.NotAfter,
		Cert:     &stdtls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}, nil
}
