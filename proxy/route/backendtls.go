package route

import (
	"crypto/tls"
	"crypto/x509"
)

// BackendTLS is the TLS a backend's endpoints are spoken to with
// (ingress-nginx's proxy-ssl-secret, -verify, -verify-depth, -name,
// -server-name and -protocols).
type BackendTLS struct {
	// ID names the settings and the Secret's content: equal IDs share
	// the endpoints' connection pools.
	ID string `json:"id"`
	// Source is the Secret of the client certificate and authorities.
	Source string `json:"source,omitempty"`
	// Verify checks the endpoint's certificate against RootCAs, for
	// ServerName ("upstream_balancer" when proxy-ssl-name is not set, as
	// nginx's $proxy_host is), to Depth certificates above it.
	Verify bool `json:"verify,omitempty"`
	Depth  int  `json:"depth,omitempty"`
	// ServerName is the name verified, and sent as SNI when SNI is set.
	ServerName string `json:"serverName,omitempty"`
	SNI        bool   `json:"sni,omitempty"`
	// MinVersion and MaxVersion bound the TLS versions (zero: Go's).
	MinVersion uint16 `json:"minVersion,omitempty"`
	MaxVersion uint16 `json:"maxVersion,omitempty"`
	// ClientCertificate, when set, is presented to the endpoints.
	ClientCertificate *tls.Certificate `json:"-"`
	HasClientCert     bool             `json:"clientCertificate,omitempty"`
	RootCAs           *x509.CertPool   `json:"-"`
	// SubjectAltNames, when set, are what the endpoint's certificate is
	// verified for instead of ServerName (still the SNI): one of them
	// must be among its SANs (a BackendTLSPolicy's subjectAltNames).
	SubjectAltNames []SubjectAltName `json:"subjectAltNames,omitempty"`
}

// SubjectAltName is a name an endpoint's certificate may have: a DNS name
// (wildcards in the certificate match one label) or a URI (a SPIFFE ID).
type SubjectAltName struct {
	DNS string `json:"dns,omitempty"`
	URI string `json:"uri,omitempty"`
}
