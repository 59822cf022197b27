package controller

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// The Ingress front end: it reads the Ingresses of our class, oldest
// first, with their postern.dev annotations (annotations.go), and turns
// their default backends, spec.tls and rules into claims on the table
// builder. What is Ingress-shaped stays here; the builder knows sources,
// hosts, paths, Service ports and Secrets only.

// ingressKind is the Kind of an Ingress's claims and Problems.
const ingressKind = "Ingress"

// addIngresses translates the Ingresses of snap that are ours into claims
// on b, oldest first (creationTimestamp, then namespace, then name), so
// that the oldest Ingress wins a conflict.
func addIngresses(b *builder, snap Snapshot, opts Options) {
	cls := newClassifier(snap.IngressClasses, opts)
	ours := ourIngresses(b, snap.Ingresses, cls)
	b.nginx = nginxHostsOf(ours, opts.annotationsPrefix())
	b.nginx.clientAuth = clientAuthHosts(b, ours, opts.annotationsPrefix())
	for _, ing := range ours {
		translateIngress(b, ing)
	}
	attachCanaries(b)
	addFromToWWW(b)
}

// ingressSource is the source of ing's claims and Problems.
func ingressSource(ing *networkingv1.Ingress) source {
	return source{kind: ingressKind, namespace: ing.Namespace, name: ing.Name}
}

// ourIngresses returns the Ingresses of our class, oldest first, each
// namespace/name only once.
func ourIngresses(b *builder, all []*networkingv1.Ingress, cls classifier) []*networkingv1.Ingress {
	var ours []*networkingv1.Ingress
	for _, ing := range all {
		if ing != nil && cls.ours(ing) {
			ours = append(ours, ing)
		}
	}
	slices.SortFunc(ours, compareIngresses)
	seen := make(map[types.NamespacedName]bool, len(ours))
	out := ours[:0]
	for _, ing := range ours {
		k := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		if seen[k] {
			// Only a folder of manifests can hold two copies of one object.
			b.problem(ingressSource(ing), ReasonConflict, fmt.Sprintf("Ingress %s/%s appears more than once; only the oldest copy is served", ing.Namespace, ing.Name))
			continue
		}
		seen[k] = true
		out = append(out, ing)
	}
	return out
}

// compareIngresses orders Ingresses by age, then namespace and name; that
// order decides conflicts. Copies of one namespace/name are ordered too, so
// that which one is served never depends on the order of the snapshot.
func compareIngresses(a, b *networkingv1.Ingress) int {
	if c := cmp.Or(
		a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
	); c != 0 {
		return c
	}
	return compareCopies(&a.ObjectMeta, &b.ObjectMeta, a, b)
}

// ingressTranslation is the translation of one Ingress: the claims are
// made for src, with what the Ingress's annotations ask for.
type ingressTranslation struct {
	b   *builder
	ing *networkingv1.Ingress
	src source
	cfg ingressConfig
	// policy is the policy of the Ingress's routes, shared by them; nil
	// when the annotations ask for none.
	policy *route.Policy
	// warnedCookiePath is set once the Problem of an affinity cookie on a
	// regex path without session-cookie-path is made.
	warnedCookiePath bool
	// refused, when not empty, is why the Ingress is not served as
	// written (a snippet annotation): every path and its default backend
	// answer 503, failing closed.
	refused string
	// errBackend is the default-backend annotation's Service; nil: none.
	errBackend *route.Backend
}

// translateIngress claims the default backend, the TLS hosts and the
// routes of the rules of one of our Ingresses, in that order.
func translateIngress(b *builder, ing *networkingv1.Ingress) {
	t := &ingressTranslation{b: b, ing: ing, src: ingressSource(ing)}
	prefix := b.opts.annotationsPrefix()
	nres := readNginx(ing.Annotations, prefix, &t.cfg)
	var msgs []string
	t.cfg, msgs = parseIngressConfig(ing.Annotations, t.cfg)
	snippets, snippetMsg := refusedSnippets(ing.Annotations, prefix)
	if t.cfg.nginx.canary != nil {
		t.deferCanary(nres, snippets)
		return
	}
	for _, m := range append(nres.problems, msgs...) {
		b.problem(t.src, ReasonInvalidAnnotation, m)
	}
	finishRateLimit(&t.cfg.policy, ing.Namespace+"/"+ing.Name+"/"+string(ing.UID), b.opts.LimitStatusCode)
	errRefused := t.errorPages()
	authRefused := t.finishAuth()
	if key := t.customHeaders(); key != "" {
		authRefused = append(authRefused, key)
	}
	if t.cfg.nginx.passthrough && !b.opts.SSLPassthrough {
		b.problem(t.src, ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/ssl-passthrough needs postern --enable-ssl-passthrough, as ingress-nginx's flag; without it the hosts' TLS is terminated here, as ingress-nginx does", prefix))
	}
	if key := t.finishProxySSL(); key != "" {
		authRefused = append(authRefused, key)
	}
	var refused []string
	if len(snippets) > 0 {
		refused = snippets
		b.problem(t.src, ReasonSnippetRefused, snippetMsg)
	}
	for _, r := range nres.refused {
		b.problem(t.src, r.reason, r.msg)
	}
	if errRefused != "" {
		refused = append(refused, errRefused)
	}
	refused = append(refused, authRefused...)
	if refused = append(refused, nres.keys...); len(refused) > 0 {
		t.refused = "refused: " + strings.Join(refused, ", ")
		// Every path answers 503: no password is checked and no auth
		// service asked (it would see the requests for nothing).
		t.cfg.policy.BasicAuth, t.cfg.policy.ExternalAuth = nil, nil
	}
	if t.cfg.policy != (route.Policy{}) {
		t.policy = &t.cfg.policy
	}
	if ib := ing.Spec.DefaultBackend; ib != nil {
		b.claimDefault(t.src, withCookiePath(t.policy, "/"), func() *route.Backend { return t.backend(ib, "the default backend") })
	}
	t.addTLS()
	for i := range ing.Spec.Rules {
		rule := &ing.Spec.Rules[i]
		host, msg := normalizeHost(rule.Host)
		if msg != "" {
			b.problem(t.src, ReasonInvalidHost, msg)
			continue
		}
		if rule.HTTP == nil {
			// A host without paths adds nothing: its requests go where
			// they would go without the rule.
			continue
		}
		for _, h := range t.servedHosts(host) {
			for j := range rule.HTTP.Paths {
				t.addPath(h, host, &rule.HTTP.Paths[j])
			}
		}
	}
}

// servedHosts returns the hosts a rule for host is served under: host,
// and for a named host the Ingress's server-alias names that no Ingress
// has as a host of its own (host rules always win, as in ingress-nginx).
func (t *ingressTranslation) servedHosts(host string) []string {
	if host == "" || len(t.cfg.nginx.aliases) == 0 {
		return []string{host}
	}
	out := []string{host}
	for _, a := range t.cfg.nginx.aliases {
		if a != host && !t.b.nginx.rules[a] {
			out = append(out, a)
		}
	}
	return out
}

// addPath claims the route of one path of a rule for host, unless the path
// is invalid. ruleHost is the rule's host, which decides whether the path
// is a regex (host differs from it for a server-alias name).
func (t *ingressTranslation) addPath(host, ruleHost string, p *networkingv1.HTTPIngressPath) {
	rp := normalizePath(p.PathType, p.Path)
	desc := describeRoute(host, rp.shown, rp.declared)
	if rp.reason != "" {
		t.b.problem(t.src, rp.reason, desc+" "+rp.msg)
		return
	}
	policy := t.policy
	if t.b.nginx.regex[ruleHost] {
		rp = t.regexPath(rp, p.Path, desc)
		if rw := t.cfg.policy.Rewrite; rw != nil && rw.Target.String() == p.Path {
			// ingress-nginx skips a rewrite to the path itself.
			policy = t.withoutRewrite()
		}
	} else if t.cfg.policy.Rewrite != nil {
		policy = t.withoutRewrite()
	}
	if root := t.b.nginx.appRoot[ruleHost]; root != "" {
		policy = withAppRoot(policy, root)
	}
	hostRefused := ""
	if hc := t.b.nginx.clientAuth[ruleHost]; hc != nil {
		if hostRefused = hc.refused; hostRefused == "" {
			policy = withClientAuth(policy, hc.ca)
		}
	}
	if policy != nil && policy.Affinity != nil && policy.Affinity.CookiePath == "" && rp.pathType == route.PathRegex && !t.warnedCookiePath {
		t.warnedCookiePath = true
		t.b.problem(t.src, ReasonInvalidAnnotation, fmt.Sprintf("%s is a regex path: its affinity cookie gets the path as written, which browsers take literally; set session-cookie-path, as ingress-nginx asks with use-regex", desc))
	}
	policy = withCookiePath(policy, p.Path)
	c := routeClaim{src: t.src, created: t.ing.CreationTimestamp, host: host, pathType: rp.pathType, path: rp.path, shownPath: rp.shown, declaredType: rp.declared, policy: policy,
		settings: t.cfg.backend, refused: t.refused != "" || rp.reason != "" || hostRefused != "", errBackend: t.errBackend}
	t.b.claimRoute(c, func() *route.Backend {
		if hostRefused != "" && t.refused == "" {
			return t.b.unavailableBackend(t.ing.Namespace, "("+t.ing.Name+": refused)", hostRefused)
		}
		if rp.reason != "" {
			return t.b.unavailableBackend(t.ing.Namespace, "("+t.ing.Name+": invalid regex)", "invalid regex path")
		}
		return t.backend(&p.Backend, desc)
	})
}

// withAppRoot returns a copy of p (nil: none) with the host's app-root,
// which any Ingress of the host sets for all of its routes, as
// ingress-nginx sets it for the server.
func withAppRoot(p *route.Policy, root string) *route.Policy {
	var c route.Policy
	if p != nil {
		c = *p
	}
	c.AppRoot = root
	return &c
}

// withoutRewrite returns the Ingress's policy without its rewrite; nil
// when nothing else is left.
func (t *ingressTranslation) withoutRewrite() *route.Policy {
	c := t.cfg.policy
	c.Rewrite = nil
	if c == (route.Policy{}) {
		return nil
	}
	return &c
}

// regexPath makes rp, a path of a host in ingress-nginx's regex mode
// (use-regex or rewrite-target on one of its Ingresses), the regex route
// ingress-nginx writes for every path of such a host, whatever its type:
// `~* "^<path>"`, case-insensitive, anchored at the start only. A path RE2
// cannot compile gets a Problem and answers 503 for the literal path, so
// that it never falls through to another route.
func (t *ingressTranslation) regexPath(rp routePath, raw, desc string) routePath {
	if raw == "" {
		raw = "/"
	}
	rp.pathType = route.PathRegex
	rp.path = nginxRegex(raw)
	if _, err := route.CompilePath(rp.path); err != nil {
		t.b.problem(t.src, ReasonInvalidPath, fmt.Sprintf("%s is not a regular expression Postern can run (RE2 has no look-around, backreferences or possessive quantifiers: %v); it answers 503", desc, shortError(err)))
		rp.path = nginxRegex(regexp.QuoteMeta(raw))
		rp.reason = ReasonInvalidPath
	}
	return rp
}

// nginxRegex is the expression ingress-nginx writes for a path of a host
// in regex mode: `~* "^<path>"`.
func nginxRegex(path string) string { return "(?i)^" + path }

// shortError cuts an error's text for a message.
func shortError(err error) string {
	s := err.Error()
	if len(s) > 2*maxQuoted {
		s = s[:2*maxQuoted] + "..."
	}
	return s
}

// backend returns the backend of ib, in the Ingress's namespace, for the
// route served names ("the default backend"). When ib cannot be served, a
// Problem says why, and the route answers 503; so do all the routes of a
// refused Ingress, without a look at their Services.
func (t *ingressTranslation) backend(ib *networkingv1.IngressBackend, served string) *route.Backend {
	if t.refused != "" {
		return t.b.unavailableBackend(t.ing.Namespace, "("+t.ing.Name+": refused)", t.refused)
	}
	be, reason, what := t.resolve(ib)
	switch {
	case reason == "":
	case t.errBackend != nil && served != "the default backend":
		t.b.problem(t.src, reason, what+"; "+served+" is answered by the default-backend annotation's service (X-Code 503)")
	default:
		t.b.problem(t.src, reason, what+"; "+served+" answers 503")
	}
	return be
}

// resolve returns the backend of ib from the builder: the Service port it
// names with the settings of the Ingress's annotations, or a backend that
// answers 503, with the reason and what is wrong.
func (t *ingressTranslation) resolve(ib *networkingv1.IngressBackend) (be *route.Backend, reason, what string) {
	return t.resolveWith(ib, t.cfg.backend)
}

// resolveWith is resolve with the backend settings set.
func (t *ingressTranslation) resolveWith(ib *networkingv1.IngressBackend, set backendSettings) (be *route.Backend, reason, what string) {
	ns := t.ing.Namespace
	switch {
	case ib.Service != nil && ib.Resource != nil:
		return t.b.unavailableBackend(ns, "(service and resource)", "invalid backend"),
			ReasonUnsupportedBackend, "the backend sets both a service and a resource"
	case ib.Resource != nil:
		kind := ib.Resource.Kind
		if g := ib.Resource.APIGroup; g != nil && *g != "" {
			kind += "." + *g
		}
		return t.b.unavailableBackend(ns, "resource:"+kind+"/"+ib.Resource.Name, "resource backends are not supported"),
			ReasonUnsupportedBackend, fmt.Sprintf("the backend is resource %s of kind %s, and resource backends are not supported", quoteShort(ib.Resource.Name), quoteShort(kind))
	case ib.Service == nil:
		return t.b.unavailableBackend(ns, "(none)", "no backend"),
			ReasonNoBackend, "the backend sets neither a service nor a resource"
	case ib.Service.Name == "":
		return t.b.unavailableBackend(ns, "(none)", "no backend"),
			ReasonNoBackend, "the backend names no service"
	}
	// The API server refuses a port with both a name and a number; the
	// number is what such a manifest gets, as servicePort says.
	port := servicePort{number: ib.Service.Port.Number, name: ib.Service.Port.Name}
	return t.b.serviceBackend(ns, ib.Service.Name, port, set)
}

// addTLS claims the hosts of each spec.tls entry of the Ingress, with the
// entry's Secret (of the Ingress's namespace: a Secret of another one
// cannot be named). An entry without hosts covers the hosts of the
// Ingress's rules.
func (t *ingressTranslation) addTLS() {
	for i := range t.ing.Spec.TLS {
		entry := &t.ing.Spec.TLS[i]
		raw := entry.Hosts
		if len(raw) == 0 {
			raw = nil // never append to the snapshot's array
			for _, r := range t.ing.Spec.Rules {
				if r.Host != "" {
					raw = append(raw, r.Host)
				}
			}
		}
		hosts := make([]string, 0, len(raw))
		for _, h := range raw {
			host, msg := normalizeHost(h)
			if msg != "" {
				t.b.problem(t.src, ReasonInvalidHost, "spec.tls: "+strings.Replace(msg, "its rule is skipped", "it gets no TLS configuration", 1))
				continue
			}
			if host != "" {
				hosts = append(hosts, host)
			}
		}
		t.b.claimTLS(t.src, hosts, entry.SecretName, t.cfg.tls)
	}
}

// routePath is an Ingress path translated to a route, or why it cannot be.
type routePath struct {
	pathType route.PathType // the route's type
	path     string         // the route's path, Prefix paths normalised
	declared string         // the Ingress's pathType, for messages
	shown    string         // the path as messages show it
	reason   string         // non-empty when the path is skipped
	msg      string         // what is wrong, following the path's description
}

// normalizePath translates an Ingress path. A nil pathType is
// ImplementationSpecific, which Postern serves as Prefix; an empty Prefix
// path is "/". A path that is not absolute, or that an Exact or Prefix path
// may not be on the API server, is refused; so is an ImplementationSpecific
// one, since it is served as a Prefix path and could not match either.
func normalizePath(pt *networkingv1.PathType, p string) routePath {
	declared := networkingv1.PathTypeImplementationSpecific
	if pt != nil {
		declared = *pt
	}
	rp := routePath{declared: string(declared)}
	switch declared {
	case networkingv1.PathTypeExact:
		rp.pathType = route.PathExact
	case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
		rp.pathType = route.PathPrefix
		if p == "" {
			p = "/"
		}
	default:
		rp.declared = "pathType " + quoteShort(string(declared))
		rp.shown = shortPath(p)
		rp.reason = ReasonUnsupportedPathType
		rp.msg = "is not supported (want Exact, Prefix or ImplementationSpecific); the path is skipped"
		return rp
	}
	rp.shown = shortPath(p)
	if msg := pathProblem(p); msg != "" {
		rp.reason = ReasonInvalidPath
		rp.msg = msg + "; the path is skipped"
		return rp
	}
	rp.path = p
	if rp.pathType == route.PathPrefix {
		rp.path = route.NormalizePrefix(p)
	}
	return rp
}
