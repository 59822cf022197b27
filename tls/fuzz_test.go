package tls

import (
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

func FuzzParseKeyPair(f *testing.F) {
	root := newTestCA(f, "root", nil)
	inter := newTestCA(f, "intermediate", root)
	ec := inter.valid(f, "ecdsa", "a.example.com")
	rsa := root.valid(f, "rsa", "b.example.com")
	ed := root.valid(f, "ed25519", "c.example.com")
	f.Add(certsPEM(ec.chain...), keyPEM(f, ec.key, "sec1"))
	f.Add(certsPEM(root.cert, inter.cert, ec.cert), keyPEM(f, ec.key, "pkcs8"))
	f.Add(certsPEM(rsa.chain...), keyPEM(f, rsa.key, "pkcs1"))
	f.Add(certsPEM(ed.chain...), keyPEM(f, ed.key, "pkcs8"))
	f.Add(certsPEM(ec.cert), keyPEM(f, rsa.key, "pkcs1"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := ParseKeyPair(route.Source{Namespace: "ns", Name: "fuzz"}, certPEM, keyPEM, now)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if c.Cert == nil || c.Cert.Leaf == nil || len(c.Cert.Certificate) == 0 || c.Cert.PrivateKey == nil {
			t.Fatalf("incomplete certificate %+v", c)
		}
		if now.After(c.NotAfter) || now.Before(c.Cert.Leaf.NotBefore) {
			t.Fatalf("certificate not valid now: %v..%v", c.Cert.Leaf.NotBefore, c.NotAfter)
		}
	})
}
