package controller

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's TLS to backends (reference §2.3):
// proxy-ssl-secret (tls.crt and tls.key, a client certificate; ca.crt,
// the authorities), proxy-ssl-verify, proxy-ssl-verify-depth,
// proxy-ssl-name, proxy-ssl-server-name and proxy-ssl-protocols, for
// HTTPS and GRPCS backends. Without them those backends get TLS without
// verification or SNI, as in ingress-nginx. They are a security setting:
// a Secret that cannot be used refuses the Ingress rather than fall back
// to unverified TLS.

// nginxProxySSL is what the proxy-ssl-* annotations of an Ingress ask for.
type nginxProxySSL struct {
	secret                 string
	verify, sni            bool
	depth                  int
	name                   string
	minVersion, maxVersion uint16
	protocols              string
}

func (n *nginxRead) proxySSL() *nginxProxySSL {
	if n.cfg.nginx.proxySSL == nil {
		n.cfg.nginx.proxySSL = &nginxProxySSL{depth: 1}
	}
	return n.cfg.nginx.proxySSL
}

func readProxySSLSecret(v string, n *nginxRead) error {
	if !isObjectRef(v) {
		return errors.New("want namespace/name of a Secret")
	}
	n.proxySSL().secret = v
	return nil
}

// parseOnOff parses nginx's on and off.
func parseOnOff(v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, errors.New(`want "on" or "off"`)
}

func readProxySSLVerify(v string, n *nginxRead) error {
	on, err := parseOnOff(v)
	if err == nil {
		n.proxySSL().verify = on
	}
	return err
}

func readProxySSLServerName(v string, n *nginxRead) error {
	on, err := parseOnOff(v)
	if err == nil {
		n.proxySSL().sni = on
	}
	return err
}

func readProxySSLVerifyDepth(v string, n *nginxRead) error {
	d, err := strconv.Atoi(v)
	if err != nil || d < 1 || d > 100 {
		return errors.New("want a whole number from 1")
	}
	n.proxySSL().depth = d
	return nil
}

func readProxySSLName(v string, n *nginxRead) error {
	h, msg := normalizeHost(v)
	if msg != "" || h == "" || strings.HasPrefix(h, "*") {
		return errors.New("want a host name")
	}
	n.proxySSL().name = h
	return nil
}

// tlsVersions are nginx's protocol names Go speaks.
var tlsVersions = map[string]uint16{"TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13}

func readProxySSLProtocols(v string, n *nginxRead) error {
	var lo, hi uint16
	for p := range strings.FieldsSeq(v) {
		ver, ok := tlsVersions[p]
		if !ok {
			return fmt.Errorf("%s is not a protocol Postern speaks to backends (TLSv1.2, TLSv1.3)", entryText(p))
		}
		if lo == 0 || ver < lo {
			lo = ver
		}
		hi = max(hi, ver)
	}
	ps := n.proxySSL()
	ps.minVersion, ps.maxVersion, ps.protocols = lo, hi, v
	return nil
}

// finishProxySSL resolves the proxy-ssl-* annotations into the backend
// settings of the Ingress; it returns the refusal's key, or "".
func (t *ingressTranslation) finishProxySSL() string {
	ps := t.cfg.nginx.proxySSL
	if ps == nil {
		return ""
	}
	prefix := t.b.opts.annotationsPrefix()
	refuse := func(msg string) string {
		t.b.problem(t.src, ReasonInvalidSecret, msg+"; every path of this Ingress answers 503 rather than speak unverified TLS to its backends")
		return prefix + "/proxy-ssl-secret"
	}
	bt := &route.BackendTLS{Verify: ps.verify, Depth: ps.depth, ServerName: ps.name, SNI: ps.sni, MinVersion: ps.minVersion, MaxVersion: ps.maxVersion}
	h := sha256.New()
	fmt.Fprintf(h, "%v|%d|%s|%v|%d|%d|", ps.verify, ps.depth, ps.name, ps.sni, ps.minVersion, ps.maxVersion)
	if ps.secret == "" {
		if ps.verify {
			return refuse(fmt.Sprintf("annotation %s/proxy-ssl-verify is on without %s/proxy-ssl-secret, whose ca.crt it verifies against", prefix, prefix))
		}
	} else {
		ns, name, found := strings.Cut(ps.secret, "/")
		if !found {
			ns, name = t.ing.Namespace, ps.secret
		}
		if ns != t.ing.Namespace {
			return refuse(fmt.Sprintf("annotation %s/proxy-ssl-secret names Secret %s of another namespace, which ingress-nginx does not allow either", prefix, quoteShort(ps.secret)))
		}
		s := t.b.secrets[types.NamespacedName{Namespace: ns, Name: name}]
		if s == nil {
			return refuse(fmt.Sprintf("the Secret %s/%s of %s/proxy-ssl-secret is not found (Postern reads Secrets of type Opaque and kubernetes.io/tls)", ns, name, prefix))
		}
		bt.Source = "Secret " + ns + "/" + name
		crt, key, ca := s.Data["tls.crt"], s.Data["tls.key"], s.Data["ca.crt"]
		if len(crt) > 0 || len(key) > 0 {
			c, err := tls.X509KeyPair(crt, key)
			if err != nil {
				return refuse(fmt.Sprintf("the Secret %s/%s has a tls.crt and tls.key that do not make a certificate (%v)", ns, name, shortError(err)))
			}
			bt.ClientCertificate, bt.HasClientCert = &c, true
		}
		if len(ca) > 0 {
			pool, _, err := parseAuthorities(ca)
			if err != nil {
				return refuse(fmt.Sprintf("the Secret %s/%s has %v", ns, name, err))
			}
			bt.RootCAs = pool
		}
		switch {
		case ps.verify && bt.RootCAs == nil:
			return refuse(fmt.Sprintf("annotation %s/proxy-ssl-verify is on but the Secret %s/%s has no ca.crt", prefix, ns, name))
		case !bt.HasClientCert && bt.RootCAs == nil:
			return refuse(fmt.Sprintf("the Secret %s/%s of %s/proxy-ssl-secret has neither tls.crt and tls.key nor ca.crt", ns, name, prefix))
		}
		h.Write(crt)
		h.Write(key)
		h.Write(ca)
	}
	if ps.verify && ps.name == "" {
		t.b.problem(t.src, ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/proxy-ssl-verify is on without %s/proxy-ssl-name: the endpoints' certificates are checked for the name upstream_balancer, as nginx's $proxy_host, which they will not have", prefix, prefix))
	}
	bt.ID = hex.EncodeToString(h.Sum(nil)[:8])
	t.cfg.backend.set("tls="+bt.ID, func(be *route.Backend) { be.TLS = bt })
	return ""
}
