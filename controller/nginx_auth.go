package controller

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's authentication (reference §2.5-2.7):
// basic auth from a Secret (auth-type, auth-secret, auth-secret-type,
// auth-realm), external auth (auth-url and its companions) and satisfy.
// They decide who gets in, so they fail closed: what cannot be honoured as
// written refuses the Ingress (503 and an Event), never serves it open.

// nginxAuth is what the authentication annotations of an Ingress ask for,
// resolved once every annotation is read (Secrets, the global auth).
type nginxAuth struct {
	authType   string // "basic", or "" when auth-type is not set
	typeGiven  bool   // auth-type is set, valid or not
	secret     string // auth-secret as written
	secretType string // auth-file (default) or auth-map
	realm      string
	realmSet   bool
	external   *route.ExternalAuth
	noGlobal   bool   // enable-global-auth: "false"
	setHeaders string // auth-proxy-set-headers as written
	cacheSet   bool   // auth-cache-duration was given
}

// auth returns the authentication being read, made on first use.
func (n *nginxRead) auth() *nginxAuth {
	if n.cfg.nginx.auth == nil {
		n.cfg.nginx.auth = &nginxAuth{}
	}
	return n.cfg.nginx.auth
}

// extAuth returns the external auth being read, made on first use.
func (n *nginxRead) extAuth() *route.ExternalAuth {
	a := n.auth()
	if a.external == nil {
		a.external = &route.ExternalAuth{}
	}
	return a.external
}

func readAuthType(v string, n *nginxRead) error {
	n.auth().typeGiven = true
	switch v {
	case "basic":
		n.auth().authType = v
		return nil
	case "digest":
		return fmt.Errorf("digest authentication: %w", errUnsupported)
	}
	return errors.New(`want "basic" or "digest"`)
}

func readAuthSecret(v string, n *nginxRead) error {
	if !isObjectRef(v) {
		return errors.New("want the name of a Secret, or namespace/name")
	}
	n.auth().secret = v
	return nil
}

func readAuthSecretType(v string, n *nginxRead) error {
	if v != "auth-file" && v != "auth-map" {
		return errors.New(`want "auth-file" or "auth-map"`)
	}
	n.auth().secretType = v
	return nil
}

// realmOK is ingress-nginx's validator of auth-realm: letters, digits,
// space and -._~/:.
var realmOK = regexp.MustCompile(`^[A-Za-z0-9 \-._~/:]*$`)

func readAuthRealm(v string, n *nginxRead) error {
	if !realmOK.MatchString(v) {
		return errors.New("want letters, digits, spaces and the characters -._~/ and colons")
	}
	a := n.auth()
	a.realm, a.realmSet = v, true
	return nil
}

func readSatisfy(v string, n *nginxRead) error {
	switch v {
	case "any":
		n.cfg.policy.SatisfyAny = true
	case "all":
	default:
		return errors.New(`want "any" or "all"`)
	}
	return nil
}

// isObjectRef reports whether v is "name" or "namespace/name" of DNS
// labels and subdomains.
func isObjectRef(v string) bool {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = ns, ""
	}
	if found && !isDNSLabel(ns) || strings.Contains(name, "/") {
		return false
	}
	return len(validation.IsDNS1123Subdomain(name)) == 0
}

// parseAuthURL parses an auth URL as ingress-nginx's StringToURL checks
// it (a scheme and a host, no ".." in the host), http or https, nginx
// variables allowed.
func parseAuthURL(v string) (*route.Template, error) {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return nil, errors.New("not a URL")
	case !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https"):
		return nil, errors.New("want an http or https URL")
	case u.Host == "" || strings.Contains(u.Host, ".."):
		return nil, errors.New("the URL has no valid host")
	}
	return t, nil
}

func readAuthURL(v string, n *nginxRead) error {
	t, err := parseAuthURL(v)
	if err != nil {
		return err
	}
	n.extAuth().URL = t
	return nil
}

// authMethods is ingress-nginx's validator of auth-method.
var authMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}

func readAuthMethod(v string, n *nginxRead) error {
	if !slices.Contains(authMethods, v) {
		return errors.New("want an HTTP method in capitals (GET, HEAD, POST, ...)")
	}
	n.extAuth().Method = v
	return nil
}

func readAuthSignin(v string, n *nginxRead) error {
	t, err := parseAuthURL(v)
	if err != nil {
		return err
	}
	n.extAuth().Signin = t
	return nil
}

// paramOK is what a query parameter name may hold here.
var paramOK = regexp.MustCompile(`^[A-Za-z0-9\-._~]+$`)

func readAuthSigninParam(v string, n *nginxRead) error {
	if !paramOK.MatchString(v) {
		return errors.New("want a query parameter name")
	}
	n.extAuth().SigninParam = v
	return nil
}

// headerNameOK is ingress-nginx's validator of header names (ValidHeader).
var headerNameOK = regexp.MustCompile(`^[a-zA-Z\d\-_]+$`)

func readAuthResponseHeaders(v string, n *nginxRead) error {
	var hs []string
	for h := range strings.SplitSeq(v, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !headerNameOK.MatchString(h) {
			return fmt.Errorf("%s is not a header name", entryText(h))
		}
		if h = http.CanonicalHeaderKey(h); !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	n.extAuth().ResponseHeaders = hs
	return nil
}

func readAuthRequestRedirect(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return err
	}
	if !fieldValueOK(v) {
		return errors.New("a header value cannot hold control characters")
	}
	n.extAuth().RequestRedirect = t
	return nil
}

func readAuthProxySetHeaders(v string, n *nginxRead) error {
	if !isObjectRef(v) {
		return errors.New("want the name of a ConfigMap, or namespace/name")
	}
	n.auth().setHeaders = v
	return nil
}

func readAuthAlwaysSetCookie(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err == nil && on {
		n.extAuth().AlwaysSetCookie = true
	}
	return err
}

func readAuthCacheKey(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return err
	}
	n.extAuth().CacheKey = t
	return nil
}

func readAuthCacheDuration(v string, n *nginxRead) error {
	c, err := parseCacheDurations(v)
	if err != nil {
		return err
	}
	n.extAuth().Cache = c
	n.auth().cacheSet = true
	return nil
}

func readEnableGlobalAuth(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err == nil && !on {
		n.auth().noGlobal = true
	}
	return err
}

// defaultCacheDuration is ingress-nginx's auth-cache-duration default.
var defaultCacheDuration = []route.CacheForCode{{Codes: []int{200, 202, 401}, TTL: route.Duration(5 * time.Minute)}}

// nginxDurationUnits are the units of nginx's time values.
var nginxDurationUnits = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "M": 30 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

var nginxDuration = regexp.MustCompile(`^(\d+)(ms|s|m|h|d|w|M|y)$`)

// parseCacheDurations parses auth-cache-duration: a comma list of
// "<codes> <time>", the codes three digits or "any" (none: any).
func parseCacheDurations(v string) ([]route.CacheForCode, error) {
	var out []route.CacheForCode
	for item := range strings.SplitSeq(v, ",") {
		fs := strings.Fields(item)
		if len(fs) == 0 {
			continue
		}
		m := nginxDuration.FindStringSubmatch(fs[len(fs)-1])
		if m == nil {
			return nil, fmt.Errorf("%s does not end in a time such as 5m", entryText(strings.TrimSpace(item)))
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 1<<30 {
			return nil, fmt.Errorf("%s: the time is too long", entryText(strings.TrimSpace(item)))
		}
		c := route.CacheForCode{TTL: route.Duration(time.Duration(n) * nginxDurationUnits[m[2]])}
		anyCode := false
		for _, f := range fs[:len(fs)-1] {
			if f == "any" {
				anyCode = true
				continue
			}
			code, err := strconv.Atoi(f)
			if err != nil || len(f) != 3 || code < 100 {
				return nil, fmt.Errorf("%s is not a status code", entryText(f))
			}
			c.Codes = append(c.Codes, code)
		}
		if anyCode {
			c.Codes = nil
		} else if len(c.Codes) == 0 {
			// nginx's proxy_cache_valid with a time alone: 200, 301, 302.
			c.Codes = []int{200, 301, 302}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New(`want "<codes> <time>", such as "200 202 10m, 401 5m"`)
	}
	return out, nil
}

// finishAuth resolves the Ingress's authentication into its policy: the
// basic auth's Secret, the external auth (its own, else the global one),
// and returns the keys of the annotations that refuse the Ingress.
func (t *ingressTranslation) finishAuth() []string {
	prefix := t.b.opts.annotationsPrefix()
	a := t.cfg.nginx.auth
	var refused []string
	refuse := func(key, reason, msg string) {
		t.b.problem(t.src, reason, msg+"; every path of this Ingress answers 503 (fail closed)")
		refused = append(refused, prefix+"/"+key)
	}
	switch {
	case a != nil && a.authType != "":
		if ba, key, reason, msg := t.basicAuthUsers(a); msg != "" {
			refuse(key, reason, msg)
		} else {
			t.cfg.policy.BasicAuth = ba
		}
	case a != nil && a.secret != "" && !a.typeGiven:
		// ingress-nginx serves such an Ingress without authentication.
		refuse("auth-secret", ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/auth-secret is set without %s/auth-type: ingress-nginx would serve these paths without authentication", prefix, prefix))
	}
	var ea *route.ExternalAuth
	if a != nil {
		ea = a.external
	}
	switch {
	case ea != nil && ea.URL != nil:
		if a.setHeaders != "" {
			hs, msg := t.authProxyHeaders(a.setHeaders)
			if msg != "" {
				refuse("auth-proxy-set-headers", ReasonInvalidAnnotation, msg)
				break
			}
			ea.Headers = hs
		}
		if ea.CacheKey != nil && !a.cacheSet {
			ea.Cache = defaultCacheDuration
		} else if ea.CacheKey == nil {
			ea.Cache = nil
		}
		t.cfg.policy.ExternalAuth = ea
	case ea != nil && (ea.Signin != nil || len(ea.ResponseHeaders) > 0 || ea.Method != ""):
		// Companions without auth-url do nothing, as in ingress-nginx.
		t.b.problem(t.src, ReasonInvalidAnnotation, fmt.Sprintf("the auth-* annotations of external authentication are set without %s/auth-url; they do nothing", prefix))
	}
	if t.cfg.policy.ExternalAuth == nil && t.b.opts.GlobalAuth != nil && (a == nil || !a.noGlobal) {
		t.cfg.policy.ExternalAuth = t.b.opts.GlobalAuth
	}
	return refused
}

// authProxyHeaders reads the header fields of auth-proxy-set-headers'
// ConfigMap ref, of the Ingress's namespace; it returns the Problem's
// message of one that cannot be used.
func (t *ingressTranslation) authProxyHeaders(ref string) (route.HeaderEdits, string) {
	prefix := t.b.opts.annotationsPrefix()
	cm, ns, name, msg := t.configMap(ref, "auth-proxy-set-headers", false)
	if msg != "" {
		return nil, msg
	}
	var hs route.HeaderEdits
	for _, k := range sortedKeys(cm.Data) {
		v := cm.Data[k]
		if !headerNameOK.MatchString(k) || slices.Contains(forbiddenEditFields, http.CanonicalHeaderKey(k)) {
			return nil, fmt.Sprintf("the ConfigMap %s/%s of %s/auth-proxy-set-headers has the key %s, which is not a header name Postern may set", ns, name, prefix, quoteShort(k))
		}
		tm, err := route.ParseTemplate(v, false)
		if err != nil {
			return nil, fmt.Sprintf("the ConfigMap %s/%s of %s/auth-proxy-set-headers has an invalid value for %s (%v)", ns, name, prefix, k, shortError(err))
		}
		hs = append(hs, route.HeaderEdit{Op: route.HeaderSet, Name: http.CanonicalHeaderKey(k), Value: tm})
	}
	return hs, ""
}

// configMap returns the ConfigMap ref names ("name", or "namespace/name"
// when another namespace is allowed), for annotation; or the Problem's
// message when it cannot be had.
func (t *ingressTranslation) configMap(ref, annotation string, otherNamespaces bool) (cm *corev1.ConfigMap, ns, name, msg string) {
	prefix := t.b.opts.annotationsPrefix()
	ns, name, found := strings.Cut(ref, "/")
	if !found {
		ns, name = t.ing.Namespace, ref
	}
	if ns != t.ing.Namespace && !otherNamespaces {
		return nil, ns, name, fmt.Sprintf("annotation %s/%s names ConfigMap %s of another namespace, which ingress-nginx does not allow either", prefix, annotation, quoteShort(ref))
	}
	cm = t.b.cms[types.NamespacedName{Namespace: ns, Name: name}]
	if cm == nil {
		return nil, ns, name, fmt.Sprintf("the ConfigMap %s/%s of annotation %s/%s is not found (Postern reads the ConfigMaps of the namespaces it watches)", ns, name, prefix, annotation)
	}
	return cm, ns, name, ""
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// basicAuthUsers reads the users of the basic auth's Secret. A Secret
// that cannot be used returns the annotation to blame, the reason and the
// message of the Problem.
func (t *ingressTranslation) basicAuthUsers(a *nginxAuth) (ba *route.BasicAuth, key, reason, msg string) {
	prefix := t.b.opts.annotationsPrefix()
	if a.secret == "" {
		return nil, "auth-type", ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/auth-type is basic but %s/auth-secret is not set", prefix, prefix)
	}
	ns, name, found := strings.Cut(a.secret, "/")
	if !found {
		ns, name = t.ing.Namespace, a.secret
	}
	if ns != t.ing.Namespace {
		return nil, "auth-secret", ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/auth-secret names Secret %s of another namespace, which ingress-nginx does not allow either", prefix, quoteShort(a.secret))
	}
	s := t.b.secrets[types.NamespacedName{Namespace: ns, Name: name}]
	if s == nil {
		return nil, "auth-secret", ReasonSecretNotFound, fmt.Sprintf("the basic auth Secret %s/%s is not found (Postern reads Secrets of type Opaque and kubernetes.io/tls)", ns, name)
	}
	ba = &route.BasicAuth{Realm: a.realm, Source: "Secret " + ns + "/" + name}
	var bad []string
	if a.secretType == "auth-map" {
		for _, k := range sortedKeys(s.Data) {
			// ingress-nginx writes "key:value" lines: the hash ends at
			// the first colon or line break.
			h := string(s.Data[k])
			if i := strings.IndexAny(h, ":\r\n"); i >= 0 {
				h = h[:i]
			}
			u := route.User{Name: k, Hash: h}
			u.Scheme, _ = route.ParseHash(h)
			if u.Scheme == "" {
				bad = append(bad, quoteShort(k))
			}
			ba.Users = append(ba.Users, u)
		}
	} else {
		data, ok := s.Data["auth"]
		if !ok {
			return nil, "auth-secret", ReasonInvalidSecret, fmt.Sprintf("the basic auth Secret %s/%s has no key \"auth\" (an htpasswd file); with one user per key, set %s/auth-secret-type: auth-map", ns, name, prefix)
		}
		var lines []int
		ba.Users, lines = parseHtpasswd(string(data))
		for _, l := range lines {
			bad = append(bad, "line "+strconv.Itoa(l))
		}
	}
	if len(ba.Users) == 0 {
		return nil, "auth-secret", ReasonInvalidSecret, fmt.Sprintf("the basic auth Secret %s/%s holds no user", ns, name)
	}
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		t.b.problem(t.src, ReasonInvalidSecret, fmt.Sprintf("the basic auth Secret %s/%s has users whose password hash Postern cannot check (%s): they cannot log in; use bcrypt, apr1, {SHA}, {SSHA}, $1$, $5$ or $6$ hashes",
			ns, name, strings.Join(bad, ", ")))
	}
	return ba, "", "", ""
}

// parseHtpasswd reads an htpasswd file as nginx's auth_basic_user_file
// does: one "user:hash[:comment]" a line, '#' at a line's start a
// comment, empty lines skipped, nothing trimmed. It returns the users
// and the numbers of the lines whose hash is not one Postern can check
// (or that have no colon).
func parseHtpasswd(data string) (users []route.User, bad []int) {
	line := 0
	for l := range strings.Lines(data) {
		line++
		l = strings.TrimRight(l, "\r\n")
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest, found := strings.Cut(l, ":")
		if !found {
			bad = append(bad, line)
			continue
		}
		hash, _, _ := strings.Cut(rest, ":")
		if i := strings.IndexByte(hash, '\r'); i >= 0 {
			hash = hash[:i]
		}
		u := route.User{Name: name, Hash: hash}
		u.Scheme, _ = route.ParseHash(hash)
		if u.Scheme == "" {
			bad = append(bad, line)
		}
		users = append(users, u)
	}
	return users, bad
}

// ParseGlobalAuth returns the controller-wide external auth of
// --global-auth-url and its companions (ingress-nginx's global-auth-*
// ConfigMap keys); nil when url is empty.
func ParseGlobalAuth(rawURL, method, signin, responseHeaders string) (*route.ExternalAuth, error) {
	if rawURL == "" {
		if method != "" || signin != "" || responseHeaders != "" {
			return nil, errors.New("--global-auth-method, --global-auth-signin and --global-auth-response-headers need --global-auth-url")
		}
		return nil, nil
	}
	cfg := ingressConfig{}
	n := &nginxRead{cfg: &cfg}
	steps := []struct {
		flag, v string
		read    func(string, *nginxRead) error
	}{
		{"--global-auth-url", rawURL, readAuthURL},
		{"--global-auth-method", method, readAuthMethod},
		{"--global-auth-signin", signin, readAuthSignin},
		{"--global-auth-response-headers", responseHeaders, readAuthResponseHeaders},
	}
	for _, s := range steps {
		if s.v == "" {
			continue
		}
		if err := s.read(s.v, n); err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.flag, quoteShort(s.v), err)
		}
	}
	ea := n.extAuth()
	ea.Global = true
	return ea, nil
}
