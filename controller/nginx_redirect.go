package controller

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's redirect annotations (reference §2.2).
// ssl-redirect, force-ssl-redirect, permanent-redirect and
// temporal-redirect are per Ingress (its locations); app-root and
// from-to-www-redirect are per host (nginx's server: any Ingress of the
// host that sets them sets them for the host), read by nginxHostsOf
// before the Ingresses are translated.

func readSSLRedirect(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err != nil {
		return err
	}
	// force-ssl-redirect wins: ingress-nginx checks it first.
	if !on && n.cfg.policy.SSLRedirect != route.SSLRedirectForce {
		n.cfg.policy.SSLRedirect = route.SSLRedirectOff
	}
	return nil
}

func readForceSSLRedirect(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if on {
		n.cfg.policy.SSLRedirect = route.SSLRedirectForce
	}
	return err
}

// The codes ingress-nginx accepts for permanent-redirect-code and
// temporal-redirect-code, and what it uses otherwise.
const (
	permanentCodeDefault, permanentCodeMax = http.StatusMovedPermanently, http.StatusPermanentRedirect
	temporalCodeDefault, temporalCodeMax   = http.StatusFound, http.StatusTemporaryRedirect
)

// redirectCode returns the code of annotation name: def when it is not
// set, or out of 300..maxCode (ingress-nginx's rule).
func redirectCode(n *nginxRead, name string, def, maxCode int) int {
	v, ok := n.get(name)
	if !ok {
		return def
	}
	c, err := strconv.Atoi(v)
	if err != nil || c < 300 || c > maxCode {
		return def
	}
	return c
}

func readPermanentRedirectCode(v string, _ *nginxRead) error {
	return checkRedirectCode(v, permanentCodeMax)
}

func readTemporalRedirectCode(v string, _ *nginxRead) error {
	return checkRedirectCode(v, temporalCodeMax)
}

// checkRedirectCode says what is wrong with a redirect code; the
// redirect's reader then uses the default code, as ingress-nginx does.
func checkRedirectCode(v string, maxCode int) error {
	c, err := strconv.Atoi(v)
	if err != nil || c < 300 || c > maxCode {
		return fmt.Errorf("want a status code from 300 to %d", maxCode)
	}
	return nil
}

func readPermanentRedirect(v string, n *nginxRead) error {
	if _, ok := n.get("temporal-redirect"); ok {
		return nil // temporal-redirect wins, its value not checked here
	}
	t, err := parseRedirectURL(v, true)
	if err != nil {
		return err
	}
	n.setRedirect(t, redirectCode(n, "permanent-redirect-code", permanentCodeDefault, permanentCodeMax))
	return nil
}

func readTemporalRedirect(v string, n *nginxRead) error {
	t, err := parseRedirectURL(v, false)
	if err != nil {
		return err
	}
	n.setRedirect(t, redirectCode(n, "temporal-redirect-code", temporalCodeDefault, temporalCodeMax))
	return nil
}

// setRedirect makes every request of the Ingress's routes answer code
// with url; relative-redirects keeps a path a path.
func (n *nginxRead) setRedirect(url *route.Template, code int) {
	rel := false
	if v, ok := n.get("relative-redirects"); ok {
		rel, _ = parseNginxBool(v)
	}
	n.cfg.policy.Redirect = &route.Redirect{Code: code, URL: url, Relative: rel}
}

// parseRedirectURL parses the URL of a permanent or temporal redirect:
// an absolute http or https URL, or (pathOK, permanent-redirect) a path;
// nginx variables allowed, as users wrote them before ingress-nginx 1.12
// refused them. A URL that starts with a variable ($scheme://...) is
// taken as written.
func parseRedirectURL(v string, pathOK bool) (*route.Template, error) {
	t, err := route.ParseTemplate(v, true)
	if err != nil {
		return nil, err
	}
	parts := t.Parts()
	if len(parts) == 0 || parts[0].Kind != route.VarLiteral {
		return t, nil
	}
	lit := parts[0].Text
	if pathOK && strings.HasPrefix(lit, "/") {
		return t, nil
	}
	scheme, _, ok := strings.Cut(lit, "://")
	if !ok {
		if pathOK {
			return nil, errors.New("want an absolute http or https URL, or a path")
		}
		return nil, errors.New("want an absolute http or https URL")
	}
	if !strings.HasPrefix(strings.ToLower(scheme), "http") {
		return nil, fmt.Errorf("only http and https URLs are allowed, not %s", quoteShort(scheme))
	}
	return t, nil
}

// parseAppRoot parses app-root: a path, which a request for "/" is
// redirected to. ingress-nginx ignores an absolute URL.
func parseAppRoot(v string) (string, error) {
	if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") {
		return "", errors.New("want a path starting with \"/\"")
	}
	if !fieldValueOK(v) || strings.ContainsAny(v, " $") {
		return "", errors.New("a path cannot hold spaces, control characters or variables")
	}
	return v, nil
}

func readAppRoot(v string, _ *nginxRead) error {
	_, err := parseAppRoot(v)
	return err // the host's, set by nginxHostsOf
}

func readFromToWWW(v string, _ *nginxRead) error {
	_, err := parseNginxBool(v)
	return err // the host's, made by addFromToWWW
}

// nginxHosts is what ingress-nginx sets per host (nginx's server) from
// the annotations of any Ingress of the host.
type nginxHosts struct {
	// regex are the hosts in ingress-nginx's regex mode, those of the
	// rules of an Ingress with use-regex or rewrite-target: every path of
	// such a host, from every Ingress, is a regex path.
	regex map[string]bool
	// rules are the hosts of every Ingress rule, which server-alias and
	// from-to-www-redirect names never take.
	rules map[string]bool
	// appRoot is the app-root of a host, the oldest Ingress's.
	appRoot map[string]string
	// toWWW are the hosts with from-to-www-redirect, in the order of
	// their Ingresses, each with the Ingress that asked first.
	toWWW []wwwRedirect
	// clientAuth is the client certificate authentication of a host, the
	// oldest Ingress's with auth-tls-secret (nginx_authtls.go).
	clientAuth map[string]*hostClientAuth
	// passthrough are the hosts of an Ingress with ssl-passthrough.
	passthrough map[string]bool
}

// wwwRedirect is a host with from-to-www-redirect.
type wwwRedirect struct {
	host string
	src  source
}

// nginxHostsOf reads the per-host annotations of ings (oldest first)
// under prefix.
func nginxHostsOf(ings []*networkingv1.Ingress, prefix string) nginxHosts {
	h := nginxHosts{regex: make(map[string]bool), rules: make(map[string]bool), appRoot: make(map[string]string), passthrough: make(map[string]bool)}
	www := make(map[string]bool)
	for _, ing := range ings {
		ann := func(name string) string { return strings.TrimSpace(ing.Annotations[prefix+"/"+name]) }
		if canary, _ := strconv.ParseBool(ann("canary")); canary {
			continue // a canary has no server of its own: its paths join others'
		}
		regex, _ := strconv.ParseBool(ann("use-regex"))
		regex = regex || ann("rewrite-target") != ""
		root, err := parseAppRoot(ann("app-root"))
		if err != nil {
			root = ""
		}
		toWWW, _ := strconv.ParseBool(ann("from-to-www-redirect"))
		pass, _ := strconv.ParseBool(ann("ssl-passthrough"))
		for _, r := range ing.Spec.Rules {
			host, msg := normalizeHost(r.Host)
			if msg != "" {
				continue
			}
			h.rules[host] = true
			if host == "" {
				continue // app-root and from-to-www need a server name
			}
			if regex {
				h.regex[host] = true
			}
			if pass {
				h.passthrough[host] = true
			}
			if _, set := h.appRoot[host]; root != "" && !set {
				h.appRoot[host] = root
			}
			if toWWW && !www[host] && host[0] != '*' {
				www[host] = true
				h.toWWW = append(h.toWWW, wwwRedirect{host: host, src: ingressSource(ing)})
			}
		}
	}
	return h
}

// wwwCounterpart returns the other name of host for from-to-www-redirect:
// www.<host>, or host without its "www.".
func wwwCounterpart(host string) string {
	if rest, ok := strings.CutPrefix(host, "www."); ok && rest != "" {
		return rest
	}
	return "www." + host
}

// addFromToWWW claims, for every host with from-to-www-redirect whose
// counterpart no Ingress has as a host, the counterpart's route: every
// request redirected to the host (308, the port always given, as
// ingress-nginx's redirect server answers). The counterpart gets the
// host's TLS configuration when the host's certificate is valid for it,
// so that HTTPS is redirected too.
func addFromToWWW(b *builder) {
	for _, w := range b.nginx.toWWW {
		other := wwwCounterpart(w.host)
		if b.nginx.rules[other] {
			continue // an Ingress serves it: ingress-nginx makes no redirect
		}
		policy := &route.Policy{HostRedirect: &route.HostRedirect{Host: w.host}}
		c := routeClaim{src: w.src, host: other, pathType: route.PathPrefix, path: "/", shownPath: "/", declaredType: "from-to-www-redirect", policy: policy}
		b.claimRoute(c, func() *route.Backend {
			return b.unavailableBackend(w.src.namespace, "("+w.src.name+": redirect to "+w.host+")", "from-to-www-redirect answers every request")
		})
		tc := b.tls[w.host]
		if tc == nil || tc.host.Certificate == nil || tc.host.Certificate.Cert == nil || tc.host.Certificate.Cert.Leaf == nil {
			continue
		}
		if tc.host.Certificate.Cert.Leaf.VerifyHostname(other) != nil {
			continue
		}
		th := *tc.host
		th.Host = other
		b.claimTLSHost(w.src, &th, tc.secret)
	}
}
