package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/test/pki"
)

// TLS to backends (proxy-ssl-*) on every engine: an endpoint that wants a
// client certificate gets the route's; the endpoint's certificate is
// checked for the route's name when verify is on (a wrong name, or
// another authority, is a 502, never a request sent to it); SNI is sent
// only when asked; without settings the endpoint is spoken to with TLS
// unverified, as in ingress-nginx.
func TestBackendTLSOnEveryEngine(t *testing.T) {
	t.Parallel()
	ca := pki.Issue(t, "backend ca", nil, pki.Options{CA: true})
	serverCert := pki.Issue(t, "backend", ca, pki.Options{DNSNames: []string{"backend.internal"}})
	clientCA := pki.Issue(t, "proxy ca", nil, pki.Options{CA: true})
	proxyCert := pki.Issue(t, "postern", clientCA, pki.Options{})
	otherCA := pki.Issue(t, "other ca", nil, pki.Options{CA: true})
	clientPool := x509.NewCertPool()
	clientPool.AddCert(clientCA.Cert)

	var lastSNI string
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastSNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			w.Header().Set("X-Client", r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		w.WriteHeader(http.StatusOK)
	}))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert.TLS()}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientPool}
	backend.StartTLS()
	t.Cleanup(backend.Close)
	addr := backend.Listener.Addr().String()

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	others := x509.NewCertPool()
	others.AddCert(otherCA.Cert)
	pc := proxyCert.TLS()
	be := func(name string, bt *route.BackendTLS) *route.Backend {
		return &route.Backend{Key: "ns/" + name + ":443", Namespace: "ns", Service: name, Port: "443", Protocol: route.ProtocolHTTPS,
			Endpoints: []route.Endpoint{{Address: addr}}, TLS: bt}
	}
	routes := []*route.Route{
		prefix("/verified", be("verified", &route.BackendTLS{ID: "a", Verify: true, Depth: 1, ServerName: "backend.internal", SNI: true, ClientCertificate: &pc, RootCAs: roots})),
		prefix("/wrong-name", be("wrong-name", &route.BackendTLS{ID: "b", Verify: true, Depth: 1, ServerName: "other.internal", RootCAs: roots})),
		prefix("/other-ca", be("other-ca", &route.BackendTLS{ID: "c", Verify: true, Depth: 1, ServerName: "backend.internal", RootCAs: others})),
		prefix("/no-sni", be("no-sni", &route.BackendTLS{ID: "d", Verify: true, Depth: 1, ServerName: "backend.internal", RootCAs: roots})),
		prefix("/default", be("default", nil)),
		// A BackendTLSPolicy's subjectAltNames: checked instead of the
		// name, which stays the SNI.
		prefix("/san", be("san", &route.BackendTLS{ID: "e", Verify: true, Depth: 100, ServerName: "sni.example", SNI: true, RootCAs: roots,
			SubjectAltNames: []route.SubjectAltName{{DNS: "nope.internal"}, {DNS: "backend.internal"}}})),
		prefix("/san-uri", be("san-uri", &route.BackendTLS{ID: "f", Verify: true, Depth: 100, ServerName: "backend.internal", SNI: true, RootCAs: roots,
			SubjectAltNames: []route.SubjectAltName{{URI: "spiffe://cluster.local/ns/x/sa/y"}}})),
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		h := New(Options{})
		h.Swap(route.NewTable([]*route.VirtualHost{vhost("tls.test", routes...)}, nil))
		t.Cleanup(h.CloseIdleConnections)
		paddr, _ := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		for _, tc := range []struct {
			path, client, sni string
			status            int
		}{
			{"/verified", "postern", "backend.internal", 200},
			{"/wrong-name", "", "", 502},
			{"/other-ca", "", "", 502},
			{"/no-sni", "", "", 200},
			{"/default", "", "", 200},
			{"/san", "", "sni.example", 200},
			{"/san-uri", "", "", 502}, // the certificate has no such URI
		} {
			lastSNI = "-"
			resp, _ := get(t, c, paddr, "tls.test", tc.path)
			if resp.StatusCode != tc.status || resp.Header.Get("X-Client") != tc.client {
				t.Errorf("%s: %d, client certificate %q; want %d, %q", tc.path, resp.StatusCode, resp.Header.Get("X-Client"), tc.status, tc.client)
			}
			if tc.status == 200 && lastSNI != tc.sni {
				t.Errorf("%s: SNI %q, want %q", tc.path, lastSNI, tc.sni)
			}
		}
	})
}
