package controller

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's response rewrites (reference §2.2,
// §2.12): proxy-redirect-from/-to (nginx's proxy_redirect) and
// proxy-cookie-domain, proxy-cookie-path (proxy_cookie_domain,
// proxy_cookie_path), into route.Policy.ResponseRewrite.

// responseRewrite returns the rewrite being read, made on first use.
func (n *nginxRead) responseRewrite() *route.ResponseRewrite {
	if n.cfg.policy.ResponseRewrite == nil {
		n.cfg.policy.ResponseRewrite = &route.ResponseRewrite{}
	}
	return n.cfg.policy.ResponseRewrite
}

// checkRewriteText says what is wrong with a text of a rewrite: nginx
// would take a '$' as a variable, which ingress-nginx's validator refuses.
func checkRewriteText(v string) error {
	if !fieldValueOK(v) || strings.ContainsAny(v, " $") {
		return errors.New("want text without spaces, variables or control characters")
	}
	return nil
}

// readProxyRedirectFrom reads proxy-redirect-from with proxy-redirect-to:
// "off" (the default) and "default" (nginx's proxy_redirect default, which
// rewrites the internal upstream URL Postern never sends) rewrite
// nothing; any other text is replaced by proxy-redirect-to at the start
// of Location and Refresh.
func readProxyRedirectFrom(v string, n *nginxRead) error {
	if v == "off" || v == "default" {
		return nil
	}
	if err := checkRewriteText(v); err != nil {
		return err
	}
	// Without a valid proxy-redirect-to nothing is rewritten (its row says
	// what is wrong with an invalid one).
	if to, ok := n.get("proxy-redirect-to"); ok && checkRewriteText(to) == nil {
		rw := n.responseRewrite()
		rw.RedirectFrom, rw.RedirectTo = v, to
	}
	return nil
}

func readProxyRedirectTo(v string, _ *nginxRead) error { return checkRewriteText(v) }

// parseRewritePair parses "off" or "<from> <to>" (proxy-cookie-domain,
// proxy-cookie-path).
func parseRewritePair(v string) (from, to string, err error) {
	if v == "off" {
		return "", "", nil
	}
	f := strings.Fields(v)
	if len(f) != 2 {
		return "", "", errors.New(`want "off" or "<from> <to>"`)
	}
	for _, s := range f {
		if err := checkRewriteText(s); err != nil {
			return "", "", err
		}
	}
	return f[0], f[1], nil
}

func readProxyCookieDomain(v string, n *nginxRead) error {
	from, to, err := parseRewritePair(v)
	if err != nil || from == "" {
		return err
	}
	rw := n.responseRewrite()
	rw.CookieDomainFrom, rw.CookieDomainTo = from, to
	return nil
}

func readProxyCookiePath(v string, n *nginxRead) error {
	from, to, err := parseRewritePair(v)
	if err != nil || from == "" {
		return err
	}
	rw := n.responseRewrite()
	rw.CookiePathFrom, rw.CookiePathTo = from, to
	return nil
}

// readCustomHeaders reads custom-headers: a ConfigMap of response fields,
// resolved once the annotations are read (customHeaders).
func readCustomHeaders(v string, n *nginxRead) error {
	if !isObjectRef(v) {
		return errors.New("want namespace/name of a ConfigMap")
	}
	n.cfg.nginx.customHeaders = v
	return nil
}

// customHeaders adds the fields of the custom-headers ConfigMap to the
// Ingress's response edits, set on every answer as more_set_headers does;
// it returns the refusal of a ConfigMap that cannot be used, or "".
func (t *ingressTranslation) customHeaders() string {
	ref := t.cfg.nginx.customHeaders
	if ref == "" {
		return ""
	}
	prefix := t.b.opts.annotationsPrefix()
	key := prefix + "/custom-headers"
	refuse := func(msg string) string {
		t.b.problem(t.src, ReasonInvalidAnnotation, msg+"; every path of this Ingress answers 503, as ingress-nginx denies it")
		return key
	}
	cm, ns, name, msg := t.configMap(ref, "custom-headers", true)
	if msg != "" {
		return refuse(msg)
	}
	allowed := t.b.opts.AllowedResponseHeaders
	var edits route.HeaderEdits
	if p := t.cfg.policy.ResponseHeaders; p != nil {
		edits = slices.Clone(*p)
	}
	for _, k := range sortedKeys(cm.Data) {
		v := strings.TrimSpace(cm.Data[k])
		h := http.CanonicalHeaderKey(k)
		switch {
		case !headerNameOK.MatchString(k) || slices.Contains(forbiddenEditFields, h):
			return refuse(fmt.Sprintf("the ConfigMap %s/%s of %s has the key %s, which is not a header name Postern may set", ns, name, key, quoteShort(k)))
		case v == "" || !fieldValueOK(v):
			return refuse(fmt.Sprintf("the ConfigMap %s/%s of %s has an empty value, or one with control characters, for %s", ns, name, key, h))
		case len(allowed) > 0 && !slices.Contains(allowed, h):
			return refuse(fmt.Sprintf("the ConfigMap %s/%s of %s sets %s, which --global-allowed-response-headers does not list", ns, name, key, h))
		}
		edits = append(edits, route.HeaderEdit{Op: route.HeaderSet, Name: h, Value: route.LiteralTemplate(v)})
	}
	if len(edits) > 0 {
		t.cfg.policy.ResponseHeaders = &edits
	}
	return ""
}
