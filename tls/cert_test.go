package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// parseKeyPairCase is one bundle for TestParseKeyPair and what
// ParseKeyPair should make of it.
type parseKeyPairCase struct {
	name      string
	cert, key []byte
	wantErr   string // substring; empty means success
	isErr     error
	names     []string
	chain     []*x509.Certificate // expected order served
}

// parseKeyPairCases issues the certificates the cases need, valid at now,
// and returns the cases: the accepted bundles first, then the refused ones.
func parseKeyPairCases(t *testing.T, now time.Time) []parseKeyPairCase {
	t.Helper()
	root := newTestCA(t, "root", nil)
	inter := newTestCA(t, "intermediate", root)
	other := newTestCA(t, "other root", nil)

	rsaLeaf := inter.valid(t, "rsa", "B.example.com", "a.example.com", "a.example.com")
	ecLeaf := inter.valid(t, "ecdsa", "ec.example.com")
	edLeaf := root.valid(t, "ed25519", "ed.example.com")
	cnOnly := root.valid(t, "ecdsa")
	stranger := other.valid(t, "ecdsa", "stranger.example.com")
	expired := root.issue(t, "ecdsa", []string{"old.example.com"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	future := root.issue(t, "ecdsa", []string{"new.example.com"}, now.Add(24*time.Hour), now.Add(48*time.Hour))

	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1, 2, 3}})
	junkKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key")})
	junkCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not a certificate")})

	return []parseKeyPairCase{
		{name: "rsa pkcs1", cert: certsPEM(rsaLeaf.chain...), key: keyPEM(t, rsaLeaf.key, "pkcs1"),
			names: []string{"a.example.com", "b.example.com"}, chain: rsaLeaf.chain},
		{name: "rsa pkcs8", cert: certsPEM(rsaLeaf.chain...), key: keyPEM(t, rsaLeaf.key, "pkcs8"),
			names: []string{"a.example.com", "b.example.com"}, chain: rsaLeaf.chain},
		{name: "ecdsa sec1", cert: certsPEM(ecLeaf.chain...), key: keyPEM(t, ecLeaf.key, "sec1"),
			names: []string{"ec.example.com"}, chain: ecLeaf.chain},
		{name: "ecdsa pkcs8", cert: certsPEM(ecLeaf.chain...), key: keyPEM(t, ecLeaf.key, "pkcs8"),
			names: []string{"ec.example.com"}, chain: ecLeaf.chain},
		{name: "ecdsa with ec parameters block", cert: certsPEM(ecLeaf.chain...), key: append(ecParams, keyPEM(t, ecLeaf.key, "sec1")...),
			names: []string{"ec.example.com"}, chain: ecLeaf.chain},
		{name: "ed25519 pkcs8", cert: certsPEM(edLeaf.chain...), key: keyPEM(t, edLeaf.key, "pkcs8"),
			names: []string{"ed.example.com"}, chain: edLeaf.chain},
		{name: "common name when no dns names", cert: certsPEM(cnOnly.chain...), key: keyPEM(t, cnOnly.key, "pkcs8"),
			names: []string{"leaf"}, chain: cnOnly.chain},
		{name: "chain with root and text around blocks", cert: append(append([]byte("subject=leaf\n"), certsPEM(ecLeaf.cert, inter.cert, root.cert)...), "trailing\n"...),
			key: keyPEM(t, ecLeaf.key, "sec1"), names: []string{"ec.example.com"}, chain: []*x509.Certificate{ecLeaf.cert, inter.cert, root.cert}},
		{name: "chain reordered: leaf last", cert: certsPEM(root.cert, inter.cert, ecLeaf.cert), key: keyPEM(t, ecLeaf.key, "sec1"),
			names: []string{"ec.example.com"}, chain: []*x509.Certificate{ecLeaf.cert, inter.cert, root.cert}},
		{name: "chain reordered: leaf in the middle", cert: certsPEM(inter.cert, ecLeaf.cert, root.cert), key: keyPEM(t, ecLeaf.key, "sec1"),
			names: []string{"ec.example.com"}, chain: []*x509.Certificate{ecLeaf.cert, inter.cert, root.cert}},
		{name: "unrelated certificate kept at the end, duplicate dropped", cert: certsPEM(other.cert, inter.cert, ecLeaf.cert, inter.cert), key: keyPEM(t, ecLeaf.key, "sec1"),
			names: []string{"ec.example.com"}, chain: []*x509.Certificate{ecLeaf.cert, inter.cert, other.cert}},

		{name: "empty certificate", cert: nil, key: keyPEM(t, ecLeaf.key, "sec1"), wantErr: "no PEM-encoded certificate found"},
		{name: "garbage certificate", cert: []byte("hello, world"), key: keyPEM(t, ecLeaf.key, "sec1"), wantErr: "no PEM-encoded certificate found"},
		{name: "certificate block that does not parse", cert: junkCert, key: keyPEM(t, ecLeaf.key, "sec1"), wantErr: "parse certificate 1 of the bundle"},
		{name: "not a CERTIFICATE block", cert: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), key: keyPEM(t, ecLeaf.key, "sec1"), wantErr: `"PUBLIC KEY" PEM block, want CERTIFICATE`},
		{name: "private key in certificate data", cert: append(certsPEM(ecLeaf.cert), keyPEM(t, ecLeaf.key, "sec1")...), key: keyPEM(t, ecLeaf.key, "sec1"), wantErr: "belongs in tls.key"},
		{name: "no key", cert: certsPEM(ecLeaf.chain...), key: nil, wantErr: "no PEM-encoded private key found"},
		{name: "garbage key", cert: certsPEM(ecLeaf.chain...), key: []byte("-----BEGIN nothing"), wantErr: "no PEM-encoded private key found"},
		{name: "key block that does not parse", cert: certsPEM(ecLeaf.chain...), key: junkKey, wantErr: "parse private key"},
		{name: "certificate in key data", cert: certsPEM(ecLeaf.chain...), key: certsPEM(ecLeaf.cert), wantErr: "the certificate belongs in tls.crt"},
		{name: "encrypted key", cert: certsPEM(ecLeaf.chain...), key: encrypted, wantErr: "encrypted"},
		{name: "key mismatch", cert: certsPEM(ecLeaf.cert), key: keyPEM(t, stranger.key, "sec1"), isErr: ErrKeyMismatch, wantErr: "private key does not match the certificate"},
		{name: "key mismatch in a bundle", cert: certsPEM(ecLeaf.chain...), key: keyPEM(t, stranger.key, "sec1"), isErr: ErrKeyMismatch, wantErr: "none of the 2 certificates"},
		{name: "rsa key for ecdsa certificate", cert: certsPEM(ecLeaf.cert), key: keyPEM(t, rsaLeaf.key, "pkcs1"), isErr: ErrKeyMismatch},
		{name: "expired", cert: certsPEM(expired.chain...), key: keyPEM(t, expired.key, "sec1"),
			wantErr: "certificate expired at " + expired.cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "not yet valid", cert: certsPEM(future.chain...), key: keyPEM(t, future.key, "sec1"),
			wantErr: "certificate is not valid yet: valid from " + future.cert.NotBefore.UTC().Format(time.RFC3339)},
	}
}

func TestParseKeyPair(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cases := parseKeyPairCases(t, now)
	src := route.Source{Namespace: "ns", Name: "secret"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKeyPair(src, tc.cert, tc.key, now)
			checkParsedKeyPair(t, tc, src, got, err)
		})
	}
}

// checkParsedKeyPair compares what ParseKeyPair returned for tc with what
// the case wants: the error it names, or the names, source, expiry and
// served chain of the certificate.
func checkParsedKeyPair(t *testing.T, tc parseKeyPairCase, src route.Source, got *route.Certificate, err error) {
	t.Helper()
	if tc.wantErr != "" || tc.isErr != nil {
		if err == nil {
			t.Fatalf("ParseKeyPair succeeded, want error %q", tc.wantErr)
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
		}
		if tc.isErr != nil && !errors.Is(err, tc.isErr) {
			t.Errorf("error %q is not %v", err, tc.isErr)
		}
		if got != nil {
			t.Errorf("got a certificate with the error")
		}
		return
	}
	if err != nil {
		t.Fatalf("ParseKeyPair: %v", err)
	}
	if !slices.Equal(got.Names, tc.names) {
		t.Errorf("Names = %q, want %q", got.Names, tc.names)
	}
	if got.Source != src {
		t.Errorf("Source = %v, want %v", got.Source, src)
	}
	if !got.NotAfter.Equal(tc.chain[0].NotAfter) {
		t.Errorf("NotAfter = %v, want %v", got.NotAfter, tc.chain[0].NotAfter)
	}
	if got.Cert == nil || got.Cert.Leaf == nil || !got.Cert.Leaf.Equal(tc.chain[0]) {
		t.Fatalf("Cert.Leaf is not the leaf")
	}
	var gotSubjects, wantSubjects []string
	for _, der := range got.Cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		gotSubjects = append(gotSubjects, c.Subject.CommonName)
	}
	for _, c := range tc.chain {
		wantSubjects = append(wantSubjects, c.Subject.CommonName)
	}
	if !slices.Equal(gotSubjects, wantSubjects) {
		t.Errorf("served chain %q, want %q", gotSubjects, wantSubjects)
	}
}

// TestParseKeyPairTooManyCertificates checks the bound on bundle size.
func TestParseKeyPairTooManyCertificates(t *testing.T) {
	t.Parallel()
	root := newTestCA(t, "root", nil)
	l := root.valid(t, "ecdsa", "a.example.com")
	var bundle []byte
	for range maxChain + 1 {
		bundle = append(bundle, certsPEM(root.cert)...)
	}
	_, err := ParseKeyPair(route.Source{}, bundle, keyPEM(t, l.key, "sec1"), time.Now())
	if err == nil || !strings.Contains(err.Error(), "more than 32 certificates") {
		t.Fatalf("error %v, want the bundle refused", err)
	}
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	c, err := SelfSigned(now)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != (route.Source{Name: "self-signed"}) {
		t.Errorf("Source = %v", c.Source)
	}
	if want := []string{DefaultCommonName}; !slices.Equal(c.Names, want) {
		t.Errorf("Names = %q, want %q", c.Names, want)
	}
	if want := now.AddDate(1, 0, 0); !c.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", c.NotAfter, want)
	}
	leaf := c.Cert.Leaf
	if leaf == nil || leaf.Subject.CommonName != DefaultCommonName {
		t.Fatalf("leaf %v", leaf)
	}
	if leaf.NotBefore.After(now) {
		t.Errorf("NotBefore %v is after now", leaf.NotBefore)
	}
	key, ok := c.Cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", c.Cert.PrivateKey)
	}
	// The certificate passes its own check.
	if _, err := ParseKeyPair(c.Source, certsPEM(leaf), keyPEM(t, key, "sec1"), now); err != nil {
		t.Errorf("ParseKeyPair(SelfSigned): %v", err)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}
