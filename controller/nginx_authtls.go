package controller

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's client certificate authentication
// (reference §2.8): auth-tls-secret (a Secret with ca.crt and an optional
// ca.crl), auth-tls-verify-client, auth-tls-verify-depth,
// auth-tls-error-page, auth-tls-pass-certificate-to-upstream and
// auth-tls-match-cn. ingress-nginx sets them for the whole server: the
// first Ingress of a host (oldest first) that has auth-tls-secret decides
// for every route of the host, whichever Ingress declared it. The row
// readers check each Ingress's own values; hostClientAuth resolves the
// host's. Fail closed: a host whose client authentication cannot be set
// up answers 503 on every path.

func readAuthTLSSecret(v string, _ *nginxRead) error {
	if !isObjectRef(v) {
		return errors.New("want namespace/name of a Secret")
	}
	return nil
}

func readAuthTLSVerifyClient(v string, _ *nginxRead) error {
	_, err := parseVerifyClient(v)
	return err
}

func parseVerifyClient(v string) (route.ClientVerify, error) {
	switch m := route.ClientVerify(v); m {
	case route.VerifyOn, route.VerifyOff, route.VerifyOptional, route.VerifyOptionalNoCA:
		return m, nil
	}
	return route.VerifyOn, errors.New("want on, off, optional or optional_no_ca")
}

func readAuthTLSVerifyDepth(v string, _ *nginxRead) error {
	_, err := parseVerifyDepth(v)
	return err
}

func parseVerifyDepth(v string) (int, error) {
	d, err := strconv.Atoi(v)
	if err != nil || d < 1 || d > 100 {
		return 1, errors.New("want a whole number from 1")
	}
	return d, nil
}

func readAuthTLSErrorPage(v string, _ *nginxRead) error {
	_, err := parseAuthURL(v)
	if err == nil && !fieldValueOK(v) {
		err = errors.New("a header value cannot hold control characters")
	}
	return err
}

func readAuthTLSMatchCN(v string, _ *nginxRead) error {
	_, err := parseMatchCN(v)
	return err
}

// parseMatchCN checks auth-tls-match-cn: "CN=" and a regular expression,
// matched as a whole against the subject's DN, unanchored.
func parseMatchCN(v string) (*regexp.Regexp, error) {
	if !strings.HasPrefix(v, "CN=") {
		return nil, errors.New(`want "CN=" and a regular expression, such as CN=(a|b)`)
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("not a regular expression Postern can run (RE2): %v", shortError(err))
	}
	return re, nil
}

// hostClientAuth is a host's client certificate authentication, or why it
// cannot be set up.
type hostClientAuth struct {
	ca      *route.ClientAuth
	refused string // not empty: every path of the host answers 503
}

// clientAuthHosts resolves the auth-tls-* annotations of the Ingresses
// (oldest first) into the hosts they protect: the first Ingress of a host
// with auth-tls-secret decides for the host. Problems go to the Ingress
// that declared it.
func clientAuthHosts(b *builder, ings []*networkingv1.Ingress, prefix string) map[string]*hostClientAuth {
	out := make(map[string]*hostClientAuth)
	for _, ing := range ings {
		ann := func(name string) string { return strings.TrimSpace(ing.Annotations[prefix+"/"+name]) }
		if _, ok := ing.Annotations[prefix+"/auth-tls-secret"]; !ok {
			continue
		}
		if canary, _ := strconv.ParseBool(ann("canary")); canary {
			continue // a canary's server-level annotations do not count
		}
		var hc *hostClientAuth // made once, for the Ingress's first new host
		for _, r := range ing.Spec.Rules {
			host, msg := normalizeHost(r.Host)
			if msg != "" || host == "" || out[host] != nil {
				continue
			}
			if hc == nil {
				hc = b.clientAuthOf(ing, ann)
			}
			out[host] = hc
		}
	}
	return out
}

// clientAuthOf reads ing's auth-tls-* annotations (ann returns a value)
// and its Secret.
func (b *builder) clientAuthOf(ing *networkingv1.Ingress, ann func(string) string) *hostClientAuth {
	src := ingressSource(ing)
	prefix := b.opts.annotationsPrefix()
	refuse := func(msg string) *hostClientAuth {
		b.problem(src, ReasonInvalidAnnotation, msg+"; every path of its hosts answers 503, never served without the client certificate check")
		return &hostClientAuth{refused: "refused: " + prefix + "/auth-tls-secret"}
	}
	ref := ann("auth-tls-secret")
	if !isObjectRef(ref) {
		return refuse(fmt.Sprintf("annotation %s/auth-tls-secret is not namespace/name of a Secret", prefix))
	}
	ns, name, found := strings.Cut(ref, "/")
	if !found {
		ns, name = ing.Namespace, ref
	}
	if ns != ing.Namespace {
		return refuse(fmt.Sprintf("annotation %s/auth-tls-secret names Secret %s of another namespace, which ingress-nginx does not allow either", prefix, quoteShort(ref)))
	}
	s := b.secrets[types.NamespacedName{Namespace: ns, Name: name}]
	if s == nil {
		return refuse(fmt.Sprintf("the client certificate authorities' Secret %s/%s of %s/auth-tls-secret is not found (Postern reads Secrets of type Opaque and kubernetes.io/tls)", ns, name, prefix))
	}
	pool, subjects, err := parseAuthorities(s.Data["ca.crt"])
	if err != nil {
		return refuse(fmt.Sprintf("the Secret %s/%s has %v", ns, name, err))
	}
	ca := &route.ClientAuth{Source: "Secret " + ns + "/" + name, Verify: route.VerifyOn, Depth: 1, Pool: pool, Authorities: subjects}
	if crl := s.Data["ca.crl"]; len(crl) > 0 {
		lists, err := parseCRLs(crl)
		if err != nil {
			return refuse(fmt.Sprintf("the Secret %s/%s has a ca.crl that does not parse (%v)", ns, name, shortError(err)))
		}
		ca.CRLs = lists
	}
	// The row readers report the Ingress's invalid values (and refuse
	// it for an invalid access value); here they only decide the host's.
	if v := ann("auth-tls-verify-client"); v != "" {
		ca.Verify, _ = parseVerifyClient(v)
	}
	if v := ann("auth-tls-verify-depth"); v != "" {
		ca.Depth, _ = parseVerifyDepth(v)
	}
	refusedHost := &hostClientAuth{refused: "refused: " + prefix + "/auth-tls-*"}
	if v := ann("auth-tls-error-page"); v != "" {
		if readAuthTLSErrorPage(v, nil) != nil {
			return refusedHost
		}
		ca.ErrorPage = v
	}
	if v := ann("auth-tls-pass-certificate-to-upstream"); v != "" {
		on, err := parseNginxBool(v)
		if err != nil {
			return refusedHost
		}
		ca.PassCertificate = on
	}
	if v := ann("auth-tls-match-cn"); v != "" {
		if _, err := parseMatchCN(v); err != nil {
			return refusedHost
		}
		ca.MatchCN = v
	}
	return &hostClientAuth{ca: ca}
}

// parseCRLs parses certificate revocation lists, PEM (X509 CRL blocks)
// or one DER list.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	rest := data
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if len(out) > 0 {
		return out, nil
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, err
	}
	return []*x509.RevocationList{l}, nil
}

// withClientAuth returns a copy of p (nil: none) with the host's client
// certificate authentication.
func withClientAuth(p *route.Policy, ca *route.ClientAuth) *route.Policy {
	var c route.Policy
	if p != nil {
		c = *p
	}
	c.ClientAuth = ca
	return &c
}

// parseAuthorities parses the PEM certificates of a ca.crt: the pool of
// them and their subjects; an error when one does not parse or there is
// none.
func parseAuthorities(data []byte) (*x509.CertPool, []string, error) {
	pool := x509.NewCertPool()
	var subjects []string
	for rest := data; len(rest) > 0; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("a certificate in ca.crt that does not parse (%v)", shortError(err))
		}
		pool.AddCert(c)
		subjects = append(subjects, c.Subject.String())
	}
	if len(subjects) == 0 {
		return nil, nil, errors.New("no PEM certificate in its key ca.crt")
	}
	return pool, subjects, nil
}
