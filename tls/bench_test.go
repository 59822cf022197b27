package tls

import (
	"context"
	stdtls "crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// benchServer starts a store serving one host with a certificate of the
// given key kind, over loopback.
func benchServer(b *testing.B, kind string) (*tlsServer, *stdtls.Config) {
	b.Helper()
	root := newTestCA(b, "root", nil)
	inter := newTestCA(b, "intermediate", root)
	cert := inter.valid(b, kind, "bench.example.com").routeCert(b, "ns", "bench")
	def, err := SelfSigned(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	s := NewStore(StoreOptions{
		Table:   fixed(tableOf(&route.TLSHost{Host: "bench.example.com", Certificate: cert})),
		Default: def,
	})
	client := &stdtls.Config{
		RootCAs:    root.pool(),
		ServerName: "bench.example.com",
		NextProtos: []string{"h2"},
		MinVersion: stdtls.VersionTLS13,
	}
	return startTLSServer(b, s, s.ServerConfig()), client
}

// BenchmarkHandshake measures full TLS 1.3 handshakes over loopback, the
// client verifying the chain, one connection per iteration.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range []string{"ecdsa", "rsa"} {
		name := map[string]string{"ecdsa": "ECDSA-P256", "rsa": "RSA-2048"}[kind]
		b.Run(name, func(b *testing.B) {
			srv, client := benchServer(b, kind)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				cs, err := srv.dial(b, client)
				if err != nil {
					b.Fatal(err)
				}
				if cs.DidResume {
					b.Fatal("resumed")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkResumedHandshake measures TLS 1.3 handshakes resumed from a
// session ticket over loopback.
func BenchmarkResumedHandshake(b *testing.B) {
	srv, client := benchServer(b, "ecdsa")
	client.ClientSessionCache = stdtls.NewLRUClientSessionCache(16)
	if _, err := srv.dial(b, client); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cs, err := srv.dial(b, client)
		if err != nil {
			b.Fatal(err)
		}
		if !cs.DidResume {
			b.Fatal("not resumed")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// BenchmarkGetCertificate measures certificate selection on a table of
// 10,000 hosts: exact hits, wildcard hits and misses.
func BenchmarkGetCertificate(b *testing.B) {
	root := newTestCA(b, "root", nil)
	cert := root.valid(b, "ecdsa", "x.example.com").routeCert(b, "ns", "x")
	def, err := SelfSigned(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	hosts := make([]*route.TLSHost, 0, n)
	hellos := make([]*stdtls.ClientHelloInfo, 0, n)
	for i := range n {
		h := fmt.Sprintf("host-%d.example.com", i)
		if i%10 == 0 {
			// Every tenth is a wildcard, matched through a subdomain.
			hosts = append(hosts, &route.TLSHost{Host: "*." + h, Certificate: cert})
			h = "www." + h
		} else {
			hosts = append(hosts, &route.TLSHost{Host: h, Certificate: cert})
		}
		hellos = append(hellos, &stdtls.ClientHelloInfo{ServerName: h})
		if i%100 == 0 {
			hellos = append(hellos, &stdtls.ClientHelloInfo{ServerName: fmt.Sprintf("unknown-%d.example.net", i)})
		}
	}
	s := NewStore(StoreOptions{Table: fixed(tableOf(hosts...)), Default: def})
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := s.GetCertificate(hellos[i]); err != nil {
			b.Fatal(err)
		}
		i++
		if i == len(hellos) {
			i = 0
		}
	}
}

// BenchmarkGetCertificateACME measures selection of an ACME certificate,
// which goes through autocert.
func BenchmarkGetCertificateACME(b *testing.B) {
	f := newACMEFixture(b, false, acmeHost("acme.example.org"))
	root := newTestCA(b, "root", nil)
	if err := f.cache.Put(context.Background(), "acme.example.org", root.valid(b, "ecdsa", "acme.example.org").autocertPEM(b)); err != nil {
		b.Fatal(err)
	}
	f.acme.Sync(context.Background())
	f.acme.wg.Wait()
	def, err := SelfSigned(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	s := NewStore(StoreOptions{Table: f.table.get, Default: def, ACME: f.acme})
	hello := &stdtls.ClientHelloInfo{ServerName: "acme.example.org"}
	if c, err := s.GetCertificate(hello); err != nil || c == def.Cert {
		b.Fatalf("no acme certificate: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}
