// Package pki issues throwaway certificates for tests: authorities, and
// client and server certificates they sign, with ECDSA P-256 keys.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// Cert is a certificate and its key.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Options shape a certificate; the zero value is a leaf valid from an hour
// ago for a day.
type Options struct {
	DNSNames []string
	CA       bool
	NotAfter time.Time // zero: a day from now
	Usages   []x509.ExtKeyUsage
}

// Issue returns a certificate for common name cn signed by parent (nil:
// self-signed); it fails tb on error.
func Issue(tb testing.TB, cn string, parent *Cert, o Options) *Cert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatal(err)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: o.DNSNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: o.NotAfter, IsCA: o.CA, BasicConstraintsValid: true,
		ExtKeyUsage: o.Usages, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &Cert{Cert: c, Key: key}
}

// TLS returns c as a tls.Certificate.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// PEM returns c's certificate and key in PEM.
func (c *Cert) PEM(tb testing.TB) (certPEM, keyPEM string) {
	tb.Helper()
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}
