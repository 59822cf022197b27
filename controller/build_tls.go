package controller

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
	posterntls "github.com/postern-dev/postern/tls"
)

// tlsSettings are how a front end wants the hosts of its TLS claims
// served. The zero value serves the certificate named in the claim, without
// a redirect or HSTS.
type tlsSettings struct {
	// host holds the settings in the route.TLSHost fields of their names
	// (Redirect, HSTS). Host, Certificate, ACME and Source are the
	// builder's: it overwrites them.
	host route.TLSHost
	// acme asks for certificates from the ACME issuer instead of from the
	// claim's Secret.
	acme bool
}

// tlsClaim is the HTTPS configuration of one host and who declared it.
type tlsClaim struct {
	host   *route.TLSHost
	src    source
	secret string // "namespace/name", "" for the default certificate or ACME
}

// certResult is a Secret's certificate, or why it cannot be served.
type certResult struct {
	cert   *route.Certificate
	reason string
	msg    string
}

// claimTLS claims HTTPS for hosts (normalised, none empty) in the name of
// src, with settings set. They get the certificate of Secret secret in
// src's namespace, the default certificate when secret is "" or the Secret
// cannot be served (a Problem says why), or the ACME issuer's when set asks
// for it (ACME does not issue wildcards: those get the default). A host
// that an earlier claim configured differently stays with it, and src gets
// a Problem.
func (b *builder) claimTLS(src source, hosts []string, secret string, set tlsSettings) {
	cert, ref, acme := b.tlsCertificate(src, secret, set.acme)
	for _, host := range hosts {
		hostACME := acme
		if hostACME && host[0] == '*' {
			b.problem(src, ReasonACMEUnavailable, fmt.Sprintf("ACME cannot issue a certificate for the wildcard host %s (it needs a DNS-01 challenge); the host is served the default certificate", host))
			hostACME = false
		}
		th := set.host
		th.Host, th.Certificate, th.ACME, th.Source = host, cert, hostACME, src.route()
		b.claimTLSHost(src, &th, ref)
	}
}

// tlsCertificate returns what the hosts of a TLS claim of src are served:
// the certificate of Secret secret in src's namespace (ref names it), the
// ACME issuer's when acme and an issuer is configured, or else the default
// certificate (nil).
func (b *builder) tlsCertificate(src source, secret string, acme bool) (cert *route.Certificate, ref string, useACME bool) {
	switch {
	case acme && !b.opts.ACME:
		b.problem(src, ReasonACMEUnavailable, fmt.Sprintf("the %s asks for ACME certificates but no ACME issuer is configured (--acme-directory is empty); its TLS hosts are served the default certificate", src.kind))
	case acme:
		return nil, "", true
	case secret != "":
		res := b.certificate(src.namespace, secret)
		if res.reason != "" {
			b.problem(src, res.reason, res.msg+"; its hosts are served the default certificate")
		}
		return res.cert, src.namespace + "/" + secret, false
	}
	return nil, "", false
}

// claimTLSHost gives th.Host to src unless an earlier claim configured it.
func (b *builder) claimTLSHost(src source, th *route.TLSHost, secret string) {
	prev := b.tls[th.Host]
	if prev == nil {
		b.tls[th.Host] = &tlsClaim{host: th, src: src, secret: secret}
		return
	}
	if prev.src == src || (prev.secret == secret && prev.host.ACME == th.ACME) {
		return // the same certificate for the host: nothing to resolve
	}
	what := "the default certificate"
	switch {
	case prev.host.ACME:
		what = "an ACME certificate"
	case prev.secret != "":
		what = "Secret " + prev.secret
	}
	b.problem(src, ReasonConflict, fmt.Sprintf("TLS for host %s is already configured by %s with %s; this %s's TLS for it is ignored", th.Host, prev.src, what, src.kind))
}

// certificate returns the checked certificate of Secret ns/name, parsed once
// per build.
func (b *builder) certificate(ns, name string) certResult {
	key := types.NamespacedName{Namespace: ns, Name: name}
	if r, ok := b.certs[key]; ok {
		return r
	}
	r := b.parseSecret(key)
	b.certs[key] = r
	return r
}

// parseSecret checks the TLS Secret key and parses its certificate.
func (b *builder) parseSecret(key types.NamespacedName) certResult {
	s := b.secrets[key]
	if s == nil {
		return certResult{reason: ReasonSecretNotFound, msg: fmt.Sprintf("TLS Secret %s not found in namespace %s", quoteShort(key.Name), quoteShort(key.Namespace))}
	}
	if s.Type != corev1.SecretTypeTLS {
		return certResult{reason: ReasonInvalidSecret, msg: fmt.Sprintf("Secret %s is of type %s, want %s", key, quoteShort(string(s.Type)), corev1.SecretTypeTLS)}
	}
	crt, keyPEM := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	src := route.Source{Namespace: key.Namespace, Name: key.Name}
	c, err := b.opts.Certificates.parse(src, crt, keyPEM, b.opts.Now)
	if err != nil {
		return certResult{reason: ReasonInvalidSecret, msg: fmt.Sprintf("TLS Secret %s: %v", key, err)}
	}
	return certResult{cert: c}
}

// defaultCertificate returns the certificate of Options.DefaultCertificate,
// or nil (the proxy's self-signed one) with a Problem on the Secret when it
// cannot be served.
func (b *builder) defaultCertificate() *route.Certificate {
	ref := b.opts.DefaultCertificate
	if ref == "" {
		return b.gatewayDefault
	}
	ns, name, _ := strings.Cut(ref, "/")
	res := b.certificate(ns, name)
	if res.reason != "" {
		b.problems = append(b.problems, Problem{
			Kind: "Secret", Namespace: ns, Name: name, Reason: res.reason,
			Message: res.msg + "; the default certificate is a self-signed one instead (--default-ssl-certificate)",
		})
	}
	return res.cert
}

// indexSecrets indexes Secrets by namespace and name; the first of
// duplicates wins, like the other indexes.
func indexSecrets(list []*corev1.Secret) map[types.NamespacedName]*corev1.Secret {
	m := make(map[types.NamespacedName]*corev1.Secret, len(list))
	for _, s := range list {
		if s == nil {
			continue
		}
		k := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
		if _, dup := m[k]; !dup {
			m[k] = s
		}
	}
	return m
}

// tlsHosts returns the TLS hosts claimed during the build.
func (b *builder) tlsHosts() []*route.TLSHost {
	out := make([]*route.TLSHost, 0, len(b.tls))
	for _, c := range b.tls {
		out = append(out, c.host)
	}
	return out // WithTLS sorts them
}

// CertificateCache remembers parsed certificates across builds, keyed by
// the Secret and a hash of its contents, so that a build caused by an
// endpoint change does not parse every certificate again. Entries not used
// by a build are dropped at the end of the next. The zero value is not
// usable; use NewCertificateCache. A nil cache parses every time.
type CertificateCache struct {
	mu   sync.Mutex
	prev map[certKey]*route.Certificate
	cur  map[certKey]*route.Certificate
}

type certKey struct {
	src  route.Source
	hash [sha256.Size]byte
}

// NewCertificateCache returns an empty cache.
func NewCertificateCache() *CertificateCache {
	return &CertificateCache{prev: map[certKey]*route.Certificate{}, cur: map[certKey]*route.Certificate{}}
}

// parse returns the checked certificate of a Secret's PEM data, from the
// cache when the same data was parsed before. Only good certificates are
// kept, and a kept one is checked against now again on every use.
func (c *CertificateCache) parse(src route.Source, certPEM, keyPEM []byte, now time.Time) (*route.Certificate, error) {
	if c == nil {
		return posterntls.ParseKeyPair(src, certPEM, keyPEM, now)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	k := certKey{src: src}
	h.Sum(k.hash[:0])

	c.mu.Lock()
	cert := c.cur[k]
	if cert == nil {
		cert = c.prev[k]
	}
	c.mu.Unlock()
	if cert != nil && validAt(cert, now) {
		c.keep(k, cert)
		return cert, nil
	}
	cert, err := posterntls.ParseKeyPair(src, certPEM, keyPEM, now)
	if err != nil {
		return nil, err
	}
	c.keep(k, cert)
	return cert, nil
}

func (c *CertificateCache) keep(k certKey, cert *route.Certificate) {
	c.mu.Lock()
	c.cur[k] = cert
	c.mu.Unlock()
}

// sweep ends a build: what it did not use is forgotten after the next.
func (c *CertificateCache) sweep() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.prev, c.cur = c.cur, make(map[certKey]*route.Certificate, len(c.cur))
	c.mu.Unlock()
}

// validAt reports whether cert's leaf is valid at now.
func validAt(cert *route.Certificate, now time.Time) bool {
	leaf := cert.Cert.Leaf
	return !now.Before(leaf.NotBefore) && !now.After(leaf.NotAfter)
}

// indexConfigMaps indexes ConfigMaps by namespace and name (indexByName).
func indexConfigMaps(list []*corev1.ConfigMap) map[types.NamespacedName]*corev1.ConfigMap {
	return indexByName(list, func(c *corev1.ConfigMap) *metav1.ObjectMeta { return &c.ObjectMeta })
}
