package tls

import (
	stdtls "crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/test/pki"
)

// A Gateway port's client certificate validation (route.ClientValidation)
// holds in the handshake, whatever the server name: without a certificate
// of its authorities the handshake fails (AllowValidOnly); with insecure
// fallback any certificate, or none, gets through.
func TestClientValidationHandshake(t *testing.T) {
	t.Parallel()
	ca := pki.Issue(t, "client ca", nil, pki.Options{CA: true})
	other := pki.Issue(t, "other ca", nil, pki.Options{CA: true})
	good := pki.Issue(t, "good client", ca, pki.Options{Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	bad := pki.Issue(t, "bad client", other, pki.Options{Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	def, err := SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, insecure := range []bool{false, true} {
		tbl := route.Empty()
		tbl.ClientValidation = &route.ClientValidation{Source: "ConfigMap ns/ca", InsecureFallback: insecure, Pool: pool}
		s := NewStore(StoreOptions{Table: fixed(tbl), Default: def})
		srv := startTLSServer(t, s, s.ServerConfig())
		for _, tc := range []struct {
			name       string
			serverName string
			cert       *pki.Cert
			ok         bool
		}{
			{"a certificate of its authorities", "any.example.com", good, true},
			{"no SNI, a certificate of its authorities", "", good, true},
			{"a certificate of another authority", "any.example.com", bad, insecure},
			{"no certificate", "any.example.com", nil, insecure},
		} {
			cfg := &stdtls.Config{InsecureSkipVerify: true, ServerName: tc.serverName} //nolint:gosec // the server's certificate is not what is tested
			asked := false
			cfg.GetClientCertificate = func(*stdtls.CertificateRequestInfo) (*stdtls.Certificate, error) {
				asked = true
				if tc.cert == nil {
					return &stdtls.Certificate{}, nil
				}
				c := tc.cert.TLS()
				return &c, nil
			}
			_, err := srv.dial(t, cfg)
			<-srv.done
			if (err == nil) != tc.ok {
				t.Errorf("insecure fallback %v, %s: handshake error %v, want success %v", insecure, tc.name, err, tc.ok)
			}
			if !asked {
				t.Errorf("insecure fallback %v, %s: no client certificate asked for", insecure, tc.name)
			}
		}
	}
}
