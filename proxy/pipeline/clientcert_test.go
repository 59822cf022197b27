package pipeline

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
	"github.com/postern-dev/postern/test/pki"
)

// newCert issues a certificate for the tests (test/pki).
func newCert(t testing.TB, subject string, parent *pki.Cert, isCA bool, notAfter time.Time, usage []x509.ExtKeyUsage) *pki.Cert {
	t.Helper()
	return pki.Issue(t, subject, parent, pki.Options{CA: isCA, NotAfter: notAfter, Usages: usage})
}

func clientAuthPipeline(t testing.TB, ca *route.ClientAuth, sslRedirect route.SSLRedirect) *Pipeline {
	t.Helper()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{ClientAuth: ca, SSLRedirect: sslRedirect}, Backends: route.Single(be)}
	vh := route.NewVirtualHost("mtls.test", []*route.Route{rt})
	vh.ClientAuth = ca
	p.Swap(route.NewTable([]*route.VirtualHost{vh}, nil))
	return p
}

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	far := time.Now().Add(24 * time.Hour)
	root := newCert(t, "root", nil, true, far, nil)
	other := newCert(t, "other", nil, true, far, nil)
	inter := newCert(t, "inter", root, true, far, nil)
	good := newCert(t, "authtls", root, false, far, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	revokedCert := newCert(t, "revoked", root, false, far, nil)
	expired := newCert(t, "old", root, false, time.Now().Add(-time.Minute), nil)
	stranger := newCert(t, "stranger", other, false, far, nil)
	deep := newCert(t, "deep", inter, false, far, nil)
	serverOnly := newCert(t, "server", root, false, far, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: far,
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revokedCert.Cert.SerialNumber, RevocationTime: time.Now()}},
	}, root.Cert, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	mk := func(verify route.ClientVerify, depth int) *route.ClientAuth {
		return &route.ClientAuth{Verify: verify, Depth: depth, Pool: pool, CRLs: []*x509.RevocationList{crl}}
	}
	chain := func(cs ...*pki.Cert) []*x509.Certificate {
		var out []*x509.Certificate
		for _, c := range cs {
			out = append(out, c.Cert)
		}
		return out
	}
	tests := []struct {
		name   string
		ca     *route.ClientAuth
		chain  []*x509.Certificate
		status int
		verify string
	}{
		{"on, valid", mk(route.VerifyOn, 1), chain(good), 0, "SUCCESS"},
		{"on, none", mk(route.VerifyOn, 1), nil, 400, ""},
		{"on, another authority", mk(route.VerifyOn, 1), chain(stranger), 400, ""},
		{"on, expired", mk(route.VerifyOn, 1), chain(expired), 400, ""},
		{"on, revoked", mk(route.VerifyOn, 1), chain(revokedCert), 400, ""},
		{"on, server-only usage", mk(route.VerifyOn, 1), chain(serverOnly), 400, ""},
		{"on, depth 1 and an intermediate", mk(route.VerifyOn, 1), chain(deep, inter), 400, ""},
		{"on, depth 2 and an intermediate", mk(route.VerifyOn, 2), chain(deep, inter), 0, "SUCCESS"},
		{"optional, none", mk(route.VerifyOptional, 1), nil, 0, "NONE"},
		{"optional, invalid", mk(route.VerifyOptional, 1), chain(stranger), 400, ""},
		{"optional_no_ca, invalid", mk(route.VerifyOptionalNoCA, 1), chain(stranger), 0, "FAILED:unable to get local issuer certificate"},
		{"optional_no_ca, expired", mk(route.VerifyOptionalNoCA, 1), chain(expired), 0, "FAILED:certificate has expired"},
		{"optional_no_ca, revoked", mk(route.VerifyOptionalNoCA, 1), chain(revokedCert), 0, "FAILED:certificate revoked"},
		{"off", mk(route.VerifyOff, 1), chain(good), 0, "NONE"},
	}
	for _, tt := range tests {
		l := clientAuthPipeline(t, tt.ca, route.SSLRedirectDefault).Listener(ListenerOptions{Secure: true})
		// A client's own ssl-client-* fields never reach the endpoint.
		in := &testHead{host: "mtls.test", header: http.Header{"Ssl-Client-Verify": {"SUCCESS"}, "Ssl-Client-Subject-Dn": {"CN=admin"}}}
		x := decide(l, in, func(x *Exchange) { x.PeerCertificates = tt.chain })
		if x.Reply.Status != tt.status {
			t.Errorf("%s: status %d (%s), want %d", tt.name, x.Reply.Status, x.Reply.Reason, tt.status)
			continue
		}
		if tt.status != 0 {
			continue
		}
		if !x.Req.Drops("Ssl-Client-Verify") || !x.Req.Drops("Ssl-Client-Subject-Dn") {
			t.Errorf("%s: a client's ssl-client-* fields may pass", tt.name)
		}
		if got := editedValues(&x.Req, "Ssl-Client-Verify"); got != tt.verify {
			t.Errorf("%s: ssl-client-verify %q, want %q", tt.name, got, tt.verify)
		}
		wantSubject := ""
		if tt.verify != "NONE" {
			wantSubject = tt.chain[0].Subject.String()
		}
		if got := editedValues(&x.Req, "Ssl-Client-Subject-Dn"); got != wantSubject {
			t.Errorf("%s: ssl-client-subject-dn %q, want %q", tt.name, got, wantSubject)
		}
	}

	// The error page, match-cn, the certificate passed on.
	ca := mk(route.VerifyOn, 1)
	ca.ErrorPage = "https://errors.test/cert"
	l := clientAuthPipeline(t, ca, route.SSLRedirectDefault).Listener(ListenerOptions{Secure: true})
	if x := decide(l, &testHead{host: "mtls.test"}, nil); x.Reply.Status != 302 || replyField(&x.Reply, "Location") != ca.ErrorPage {
		t.Errorf("error page: %d %q", x.Reply.Status, replyField(&x.Reply, "Location"))
	}
	ca = mk(route.VerifyOn, 1)
	ca.MatchCN, ca.PassCertificate = "CN=(a|b|authtls)", true
	l = clientAuthPipeline(t, ca, route.SSLRedirectDefault).Listener(ListenerOptions{Secure: true})
	x := decide(l, &testHead{host: "mtls.test"}, func(x *Exchange) { x.PeerCertificates = chain(good) })
	if x.Reply.Status != 0 || !strings.HasPrefix(editedValues(&x.Req, "Ssl-Client-Cert"), "-----BEGIN%20CERTIFICATE-----%0A") {
		t.Errorf("match-cn matching, certificate passed: %d, ssl-client-cert %.40q", x.Reply.Status, editedValues(&x.Req, "Ssl-Client-Cert"))
	}
	ca.MatchCN = "CN=(a|b)$"
	l = clientAuthPipeline(t, ca, route.SSLRedirectDefault).Listener(ListenerOptions{Secure: true})
	if x := decide(l, &testHead{host: "mtls.test"}, func(x *Exchange) { x.PeerCertificates = chain(good) }); x.Reply.Status != 403 {
		t.Errorf("match-cn not matching: %d, want 403", x.Reply.Status)
	}

	// Plain HTTP: redirected to HTTPS when the route does, else refused.
	tp := clientAuthPipeline(t, mk(route.VerifyOn, 1), route.SSLRedirectForce)
	if x := decide(tp.Listener(ListenerOptions{}), &testHead{host: "mtls.test"}, nil); x.Reply.Status != 308 {
		t.Errorf("plain HTTP with the redirect: %d, want 308", x.Reply.Status)
	}
	tp = clientAuthPipeline(t, mk(route.VerifyOn, 1), route.SSLRedirectOff)
	if x := decide(tp.Listener(ListenerOptions{}), &testHead{host: "mtls.test"}, nil); x.Reply.Status != 400 {
		t.Errorf("plain HTTP without the redirect: %d, want 400 (never served without the check)", x.Reply.Status)
	}
}

func BenchmarkClientCertRemembered(b *testing.B) {
	far := time.Now().Add(24 * time.Hour)
	root := newCert(b, "root", nil, true, far, nil)
	good := newCert(b, "authtls", root, false, far, nil)
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	c, _ := newClientCert(&route.Route{Policy: &route.Policy{ClientAuth: &route.ClientAuth{Verify: route.VerifyOn, Depth: 1, Pool: pool}}})
	chain := []*x509.Certificate{good.Cert}
	for b.Loop() {
		if r := c.result(chain); r.verify != "SUCCESS" {
			b.Fatal(r.verify)
		}
	}
}

// FuzzClientCertFields: whatever a client sends in the ssl-client-*
// fields and whatever its certificate's subject holds, the request sent
// upstream carries only Postern's values, each a valid field value.
func FuzzClientCertFields(f *testing.F) {
	far := time.Now().Add(24 * time.Hour)
	root := newCert(f, "root", nil, true, far, nil)
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"SUCCESS", "CN=admin\r\nX-Admin: 1", "\x00", "a,b+c=\"d\""} {
		f.Add(s, s)
	}
	l := clientAuthPipeline(f, &route.ClientAuth{Verify: route.VerifyOptionalNoCA, Depth: 1, Pool: pool, PassCertificate: true}, route.SSLRedirectDefault).
		Listener(ListenerOptions{Secure: true})
	f.Fuzz(func(t *testing.T, sent, cn string) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{sent}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: far}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, &key.PublicKey, root.Key)
		if err != nil {
			return
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		in := &testHead{host: "mtls.test", header: http.Header{}}
		for _, name := range clientFields {
			in.header[name] = []string{sent}
		}
		x := decide(l, in, func(x *Exchange) { x.PeerCertificates = []*x509.Certificate{cert} })
		if x.Reply.Status != 0 {
			t.Fatalf("optional_no_ca refused: %d", x.Reply.Status)
		}
		for _, name := range clientFields {
			if !x.Req.Drops(name) {
				t.Fatalf("the client's %s may pass", name)
			}
		}
		for _, ed := range x.Req.All() {
			if ed.Op != Del && !fieldSafe(ed.Value) {
				t.Fatalf("%s: %q is not a field value", ed.Name, ed.Value)
			}
		}
		if v := editedValues(&x.Req, headerClientVerify); v != "SUCCESS" {
			t.Fatalf("ssl-client-verify %q", v)
		}
	})
}
