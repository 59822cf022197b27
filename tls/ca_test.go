package tls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// testCA is a certificate authority for tests: a root, or an intermediate
// when parent is set.
type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	parent *testCA
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// sharedRSAKey returns one RSA 2048 key for every test that needs one;
// generating them is slow, particularly under the race detector.
func sharedRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("generate rsa key: %v", err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	switch kind {
	case "rsa":
		return sharedRSAKey(t)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	default:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}

var serial int64 = 1

var serialMu sync.Mutex

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial++
	return big.NewInt(serial)
}

// newTestCA returns a root CA (parent nil) or an intermediate signed by
// parent, valid from an hour ago for ten years.
func newTestCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key := newKey(t, "ecdsa")
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatalf("create ca: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key, parent: parent}
}

// pool returns a pool holding the root of ca's chain.
func (ca *testCA) pool() *x509.CertPool {
	root := ca
	for root.parent != nil {
		root = root.parent
	}
	p := x509.NewCertPool()
	p.AddCert(root.cert)
	return p
}

// leaf is a certificate issued by a testCA with its key.
type leaf struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // leaf, then the intermediates up to (not including) the root
}

// issue returns a server certificate for names with the given key kind
// ("ecdsa", "rsa" or "ed25519") and validity.
func (ca *testCA) issue(t testing.TB, kind string, names []string, notBefore, notAfter time.Time) *leaf {
	t.Helper()
	key := newKey(t, kind)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "leaf"},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	l := &leaf{cert: c, key: key, chain: []*x509.Certificate{c}}
	for p := ca; p.parent != nil; p = p.parent {
		l.chain = append(l.chain, p.cert)
	}
	return l
}

// valid issues a certificate valid from an hour ago for 90 days.
func (ca *testCA) valid(t testing.TB, kind string, names ...string) *leaf {
	t.Helper()
	return ca.issue(t, kind, names, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// keyPEM encodes key as "pkcs1", "sec1" or "pkcs8".
func keyPEM(t testing.TB, key crypto.Signer, format string) []byte {
	t.Helper()
	var b *pem.Block
	switch format {
	case "pkcs1":
		b = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	return pem.EncodeToMemory(b)
}

// routeCert turns l into a route.Certificate through ParseKeyPair.
func (l *leaf) routeCert(t testing.TB, ns, name string) *route.Certificate {
	t.Helper()
	c, err := ParseKeyPair(route.Source{Namespace: ns, Name: name}, certsPEM(l.chain...), keyPEM(t, l.key, "pkcs8"), time.Now())
	if err != nil {
		t.Fatalf("ParseKeyPair: %v", err)
	}
	return c
}

// autocertPEM encodes l the way autocert caches it: the private key, then
// the chain.
func (l *leaf) autocertPEM(t testing.TB) []byte {
	t.Helper()
	return append(keyPEM(t, l.key, "sec1"), certsPEM(l.chain...)...)
}

// tableOf returns a table serving the given TLS hosts.
func tableOf(hosts ...*route.TLSHost) *route.Table {
	return route.Empty().WithTLS(hosts)
}

func fixed(t *route.Table) func() *route.Table { return func() *route.Table { return t } }
