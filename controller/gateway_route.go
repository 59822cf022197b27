package controller

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// attachment is a listener a route attached to and the hostnames it
// serves there (normalised; "" for any host).
type attachment struct {
	l     *listenerState
	hosts []string
}

// xRoute is what the translation of a route of any kind reads: its
// object, parentRefs and hostnames, and the routes of its rules.
type xRoute struct {
	src        source
	meta       *metav1.ObjectMeta
	parentRefs []gatewayv1.ParentReference
	hostnames  []gatewayv1.Hostname
	rules      func() ([]*route.Route, refsResult)
}

// httpRoute translates hr (attachRoute).
func (t *gatewayTranslation) httpRoute(hr *gatewayv1.HTTPRoute) (RouteResult, bool) {
	src := source{kind: httpRouteKind, namespace: hr.Namespace, name: hr.Name}
	return t.attachRoute(xRoute{src: src, meta: &hr.ObjectMeta, parentRefs: hr.Spec.ParentRefs, hostnames: hr.Spec.Hostnames,
		rules: func() ([]*route.Route, refsResult) { return t.rules(src, hr) }})
}

// attachRoute translates route x: its parentRefs that name our Gateways,
// each with a parent status, and the routes of its rules for the
// hostnames of the listeners it attached to. It reports false when x
// names none of our Gateways: its status is someone else's.
func (t *gatewayTranslation) attachRoute(x xRoute) (RouteResult, bool) {
	src := x.src
	res := RouteResult{Namespace: x.meta.Namespace, Name: x.meta.Name}
	if !slices.ContainsFunc(x.parentRefs, func(ref gatewayv1.ParentReference) bool {
		_, ok := t.parentGateway(x.meta.Namespace, ref)
		return ok
	}) {
		// Another controller's route, or nobody's: no status, no
		// Problem, nothing served.
		return res, false
	}
	hostnames := make([]string, 0, len(x.hostnames))
	for _, h := range x.hostnames {
		if n, problem := normalizeHost(string(h)); problem == "" && n != "" {
			hostnames = append(hostnames, n)
		} else if problem != "" {
			t.b.problem(src, ReasonInvalidHost, problem)
		}
	}
	t.services = t.services[:0]
	rules, resolved := x.rules()
	services := slices.Clone(t.services)
	// A Gateway with a client certificate for its TLS backends gets the
	// rules built again with it (their backends differ).
	withCert := make(map[string][]*route.Route)
	rulesFor := func(gs *gatewayState) []*route.Route {
		if gs.backendCert == nil {
			return rules
		}
		if rs, ok := withCert[gs.backendCertID]; ok {
			return rs
		}
		t.backendCert, t.backendCertID = gs.backendCert, gs.backendCertID
		rs, _ := x.rules()
		t.backendCert, t.backendCertID = nil, ""
		withCert[gs.backendCertID] = rs
		return rs
	}
	served := make(map[*builder][]string) // hosts claimed per table, so two parents do not claim twice
	for _, ref := range x.parentRefs {
		gs, ok := t.parentGateway(x.meta.Namespace, ref)
		if !ok {
			continue
		}
		gen := x.meta.Generation
		ps := gatewayv1.RouteParentStatus{
			ParentRef:      ref,
			ControllerName: gatewayv1.GatewayController(t.opts.gatewayControllerName()),
		}
		atts, reason, msg := t.attach(gs, ref, src.kind, x.meta.Namespace, hostnames)
		atts, reason, msg = t.exclusive(atts, src, reason, msg)
		accepted := string(gatewayv1.RouteConditionAccepted)
		if len(atts) == 0 {
			ps.Conditions = append(ps.Conditions, condition(accepted, false, reason, msg, gen))
		} else {
			ps.Conditions = append(ps.Conditions, condition(accepted, true, string(gatewayv1.RouteReasonAccepted), "", gen))
		}
		ps.Conditions = append(ps.Conditions, resolved.at(gen))
		res.Parents = append(res.Parents, ps)
		if len(atts) > 0 {
			for _, svc := range services {
				t.usedBy(svc, gs)
			}
		}
		for _, a := range atts {
			a.l.attached++
			if !a.l.serving {
				continue
			}
			b := t.routeBuilder(a.l)
			for _, h := range a.hosts {
				if slices.Contains(served[b], h) {
					continue
				}
				served[b] = append(served[b], h)
				for _, rt := range rulesFor(gs) {
					b.claimGatewayRoute(h, rt, src, x.meta.CreationTimestamp)
				}
			}
		}
	}
	return res, len(res.Parents) > 0
}

// exclusive keeps the attachments of atts whose hosts no route of the
// other kind (HTTPRoute, GRPCRoute) holds on the listener: the spec gives
// overlapping hostnames of one listener to the older route of the two
// kinds (routes attach oldest first) and the other is not Accepted there.
// It records the hosts kept as held by src's kind; reason and msg are
// those of the Accepted condition when nothing is left.
func (t *gatewayTranslation) exclusive(atts []attachment, src source, reason, msg string) ([]attachment, string, string) {
	if len(atts) == 0 {
		return atts, reason, msg
	}
	kept := atts[:0:0]
	var lost *listenerState // the first listener refused, with the host and the kind holding it
	var lostHost, lostKind string
	for _, a := range atts {
		if a.l.hosts == nil {
			a.l.hosts, a.l.kindHosts = make(map[string]string), make(map[string]int)
		}
		if h, kind, clash := a.l.held(src.kind, a.hosts); clash {
			if lost == nil {
				lost, lostHost, lostKind = a.l, h, kind
			}
			continue
		}
		for _, h := range a.hosts {
			if _, had := a.l.hosts[h]; !had {
				a.l.hosts[h] = src.kind
				a.l.kindHosts[src.kind]++
			}
		}
		kept = append(kept, a)
	}
	if len(kept) == 0 {
		if lostHost == "" {
			lostHost = "*"
		}
		return nil, string(gatewayv1.RouteReasonNotAllowedByListeners),
			fmt.Sprintf("listener %s already serves hostname %s to an older %s; HTTPRoutes and GRPCRoutes do not share a hostname", quoteShort(string(lost.spec.Name)), quoteShort(lostHost), lostKind)
	}
	return kept, "", ""
}

// held reports a host of hosts that overlaps one l serves to routes of a
// kind other than kind, and that kind.
func (l *listenerState) held(kind string, hosts []string) (string, string, bool) {
	if l.kindHosts[kind] == len(l.hosts) {
		return "", "", false // the common case: one kind only
	}
	for h, k := range l.hosts {
		if k == kind {
			continue
		}
		for _, mine := range hosts {
			if h == "" || mine == "" || h == mine || covers(h, mine) || covers(mine, h) {
				return mine, k, true
			}
		}
	}
	return "", "", false
}

// parentGateway returns our Gateway that ref (of a route in namespace
// ns) names, if it names one.
func (t *gatewayTranslation) parentGateway(ns string, ref gatewayv1.ParentReference) (*gatewayState, bool) {
	if ref.Group != nil && string(*ref.Group) != gatewayGroup || ref.Kind != nil && string(*ref.Kind) != gatewayKind {
		return nil, false
	}
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	gs := t.gateways[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
	return gs, gs != nil
}

// attach returns the listeners of gs that a route of kind and namespace ns with
// hostnames attaches to through ref, with the hostnames served on each;
// when there is none, the reason and message of its Accepted condition.
func (t *gatewayTranslation) attach(gs *gatewayState, ref gatewayv1.ParentReference, kind, ns string, hostnames []string) (atts []attachment, reason, msg string) {
	var named []*listenerState
	for _, l := range gs.listeners {
		if ref.SectionName != nil && *ref.SectionName != "" && l.spec.Name != *ref.SectionName {
			continue
		}
		if ref.Port != nil && *ref.Port != 0 && l.spec.Port != *ref.Port {
			continue
		}
		named = append(named, l)
	}
	if len(named) == 0 {
		return nil, string(gatewayv1.RouteReasonNoMatchingParent), "no listener of the Gateway matches the parentRef's sectionName and port"
	}
	var allowed []*listenerState
	for _, l := range named {
		if l.accepted && t.allows(l, kind, ns) {
			allowed = append(allowed, l)
		}
	}
	if len(allowed) == 0 {
		return nil, string(gatewayv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no listener of the Gateway allows %ss from namespace %s", kind, quoteShort(ns))
	}
	for _, l := range allowed {
		hosts := intersectHosts(l.host, hostnames)
		if len(hosts) == 0 {
			continue
		}
		if !l.serving {
			// Attached, but the listener serves nothing until its
			// references resolve.
			hosts = nil
		}
		atts = append(atts, attachment{l: l, hosts: hosts})
	}
	if len(atts) == 0 {
		return nil, string(gatewayv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches a listener's hostname"
	}
	return atts, "", ""
}

// intersectHosts returns the hosts a route with hostnames serves on a
// listener with hostname listener ("" for any): the route's that the
// listener's covers (the more specific of the two when a wildcard meets a
// name it covers), the listener's when the route names none, "" when
// neither does; none when they do not meet.
func intersectHosts(listener string, hostnames []string) []string {
	if len(hostnames) == 0 {
		return []string{listener}
	}
	if listener == "" {
		return slices.Clone(hostnames)
	}
	var out []string
	for _, h := range hostnames {
		switch {
		case h == listener:
			out = append(out, h)
		case covers(listener, h):
			out = append(out, h)
		case covers(h, listener):
			out = append(out, listener)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// covers reports whether the Gateway API hostname pattern matches name: a
// wildcard "*.example.com" matches every name below example.com, at any
// depth (and a narrower wildcard); an exact name only itself.
func covers(pattern, name string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return pattern == name
	}
	return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
}

// refsResult is the ResolvedRefs condition of a route, without its
// generation.
type refsResult struct {
	ok          bool
	reason, msg string
}

// at returns r as a condition at generation gen.
func (r refsResult) at(gen int64) metav1.Condition {
	return condition(string(gatewayv1.RouteConditionResolvedRefs), r.ok, r.reason, r.msg, gen)
}

// rules returns the routes of hr's rules, one per match, for any host,
// and its ResolvedRefs condition: the first backendRef that cannot be
// resolved says why.
func (t *gatewayTranslation) rules(src source, hr *gatewayv1.HTTPRoute) ([]*route.Route, refsResult) {
	resolved := refsResult{ok: true, reason: string(gatewayv1.RouteReasonResolvedRefs)}
	var out []*route.Route
	for ri := range hr.Spec.Rules {
		rule := &hr.Spec.Rules[ri]
		backends, bad := t.backendRefs(src, rule.BackendRefs)
		if bad.reason != "" && resolved.ok {
			resolved = bad
		}
		mirrors, bad := t.mirrors(src, rule.Filters)
		if bad.reason != "" && resolved.ok {
			resolved = bad
		}
		if len(mirrors) > 0 {
			backends = append(slices.Clip(backends), mirrors...)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		for mi := range matches {
			m, problem := translateMatch(&matches[mi])
			if problem != "" {
				t.b.problem(src, ReasonInvalidPath, fmt.Sprintf("rule %d match %d %s; it is not served", ri+1, mi+1, problem))
				continue
			}
			pol, redirects, problem := t.filters(rule, m)
			if problem == "" && rule.Timeouts != nil {
				pol, problem = routeTimeouts(pol, rule.Timeouts)
			}
			out = append(out, t.ruleRoute(src, ri, m, pol, backends, problem, redirects, len(rule.BackendRefs) == 0))
		}
	}
	return out, resolved
}

// ruleRoute returns the route of one match m of rule ri of src, with the
// policy of its filters and its backends: when a filter cannot be carried
// out (problem), when it redirects, or when it has no backendRefs, a
// backend that answers 500 instead.
func (t *gatewayTranslation) ruleRoute(src source, ri int, m route.Match, pol *route.Policy, backends []route.WeightedBackend, problem string, redirects, noBackends bool) *route.Route {
	rt := &route.Route{Match: m, Policy: pol, Backends: backends, Source: src.route()}
	switch {
	case problem != "":
		t.b.problem(src, ReasonUnsupportedFilter, fmt.Sprintf("rule %d %s; its requests are answered 500", ri+1, problem))
		rt.Policy = nil
		rt.Backends = route.Single(t.b.failing(src.namespace, "invalid-filter", problem))
	case redirects:
		// Answered by the redirect: no backend is used.
		rt.Backends = route.Single(t.b.failing(src.namespace, "redirect", "the route redirects"))
	case noBackends:
		rt.Backends = route.Single(t.b.failing(src.namespace, "no-backends", "the rule has no backendRefs"))
	}
	return rt
}

// translateMatch returns the table match of an HTTPRoute match, or why it
// cannot be served.
func translateMatch(hm *gatewayv1.HTTPRouteMatch) (route.Match, string) {
	m := route.Match{PathType: route.PathPrefix, Path: "/"}
	if p := hm.Path; p != nil {
		value := "/"
		if p.Value != nil {
			value = *p.Value
		}
		typ := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		switch typ {
		case gatewayv1.PathMatchExact:
			if problem := pathProblem(value); problem != "" {
				return m, "path " + shortPath(value) + " " + problem
			}
			m.PathType, m.Path = route.PathExact, value
		case gatewayv1.PathMatchPathPrefix:
			if problem := pathProblem(value); problem != "" {
				return m, "path " + shortPath(value) + " " + problem
			}
			m.PathType, m.Path = route.PathPrefix, route.NormalizePrefix(value)
		case gatewayv1.PathMatchRegularExpression:
			expr := "^(?:" + value + ")$"
			if _, err := route.CompilePath(expr); err != nil {
				return m, "path expression " + quoteShort(value) + " is not valid RE2"
			}
			m.PathType, m.Path = route.PathRegex, expr
		default:
			return m, "path type " + quoteShort(string(typ)) + " is not supported"
		}
	}
	if hm.Method != nil {
		m.Method = string(*hm.Method)
	}
	if problem := headerMatches(&m, hm.Headers, func(h gatewayv1.HTTPHeaderMatch) (string, bool, string) {
		return string(h.Name), h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression, h.Value
	}); problem != "" {
		return m, problem
	}
	seenQ := make(map[string]bool)
	for _, q := range hm.QueryParams {
		if seenQ[string(q.Name)] {
			continue
		}
		seenQ[string(q.Name)] = true
		f, problem := fieldMatch(string(q.Name), q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression, q.Value)
		if problem != "" {
			return m, "query parameter " + problem
		}
		m.Query = append(m.Query, f)
	}
	return m, ""
}

// headerMatches adds to m the header matches of hs, each read by field
// (its name, whether its value is an expression, and the value); only the
// first match of a name counts.
func headerMatches[H any](m *route.Match, hs []H, field func(H) (string, bool, string)) string {
	seen := make(map[string]bool)
	for _, h := range hs {
		name, regex, value := field(h)
		name = http.CanonicalHeaderKey(name)
		if seen[name] {
			continue
		}
		seen[name] = true
		f, problem := fieldMatch(name, regex, value)
		if problem != "" {
			return "header " + problem
		}
		m.Headers = append(m.Headers, f)
	}
	return ""
}

// fieldMatch returns the condition that field name has value, or for
// regex a value the expression matches.
func fieldMatch(name string, regex bool, value string) (route.FieldMatch, string) {
	if !regex {
		return route.ExactField(name, value), ""
	}
	f, err := route.RegexField(name, value)
	if err != nil {
		return f, quoteShort(name) + " expression is not valid RE2"
	}
	return f, ""
}

// backendRefs returns the backends of a rule's backendRefs with their
// weights; a reference that cannot be resolved is a backend that answers
// 500, and the first such says why in the route's ResolvedRefs.
func (t *gatewayTranslation) backendRefs(src source, refs []gatewayv1.HTTPBackendRef) ([]route.WeightedBackend, refsResult) {
	var out []route.WeightedBackend
	var bad refsResult
	for _, ref := range refs {
		weight := int32(1)
		if ref.Weight != nil {
			weight = *ref.Weight
		}
		be, res := t.backendRef(src, ref.BackendObjectReference, route.ProtocolHTTP, shareFails)
		if res.reason != "" && bad.reason == "" {
			bad = res
		}
		wb := route.WeightedBackend{Backend: be, Weight: weight}
		if problem := backendFilters(&wb, ref.Filters); problem != "" {
			t.b.problem(src, ReasonUnsupportedFilter, fmt.Sprintf("backendRef %s %s; its share of the requests is answered 500", quoteShort(string(ref.Name)), problem))
			wb = route.WeightedBackend{Backend: t.b.failing(src.namespace, "invalid-backend-filter", problem), Weight: weight}
		}
		out = append(out, wb)
	}
	return out, bad
}

// shareFails is what a Problem says of a backendRef that does not
// resolve.
const shareFails = "its share of the requests is answered 500"

// backendRef resolves one backendRef of a route of src, whose backends
// speak proto: HTTP (HTTPRoutes; H2C when the Service port's appProtocol
// is kubernetes.io/h2c) or GRPC (GRPCRoutes). then is what a Problem says
// follows when it does not resolve.
func (t *gatewayTranslation) backendRef(src source, ref gatewayv1.BackendObjectReference, proto route.Protocol, then string) (*route.Backend, refsResult) {
	group, kind, ns := refParts(ref.Group, ref.Kind, ref.Namespace, "Service", src.namespace)
	name := string(ref.Name)
	what := strings.TrimPrefix(group+"/"+kind, "/")
	fail := func(reason, msg string) (*route.Backend, refsResult) {
		problem := map[string]string{
			string(gatewayv1.RouteReasonInvalidKind):      ReasonUnsupportedBackend,
			string(gatewayv1.RouteReasonRefNotPermitted):  ReasonRefNotPermitted,
			string(gatewayv1.RouteReasonUnsupportedValue): ReasonPortNotFound,
			string(gatewayv1.RouteReasonBackendNotFound):  ReasonServiceNotFound,
		}[reason]
		t.b.problem(src, problem, msg+"; "+then)
		return t.b.failing(ns, "unresolved/"+what+"/"+name, msg), refsResult{reason: reason, msg: msg}
	}
	switch {
	case group != "" || kind != "Service":
		return fail(string(gatewayv1.RouteReasonInvalidKind), fmt.Sprintf("backendRef %s is a %s; only core Services are supported", quoteShort(name), quoteShort(what)))
	case ns != src.namespace && !t.granted(src.kind, src.namespace, "", "Service", ns, name):
		return fail(string(gatewayv1.RouteReasonRefNotPermitted), fmt.Sprintf("Service %s is in another namespace and no ReferenceGrant there allows %ss of namespace %s to use it", quoteShort(ns+"/"+name), src.kind, quoteShort(src.namespace)))
	case ref.Port == nil:
		return fail(string(gatewayv1.RouteReasonUnsupportedValue), fmt.Sprintf("backendRef %s names no port", quoteShort(name)))
	}
	svc := t.b.services[types.NamespacedName{Namespace: ns, Name: name}]
	if svc == nil {
		return fail(string(gatewayv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s not found", quoteShort(ns+"/"+name)))
	}
	port := servicePort{number: *ref.Port}
	var set backendSettings
	sp := findServicePort(svc, port)
	svcKey := types.NamespacedName{Namespace: ns, Name: name}
	t.services = append(t.services, svcKey)
	portName := ""
	if sp != nil {
		portName = sp.Name
	}
	if st := t.backendTLSFor(svcKey, portName); st != nil {
		if st.tls == nil {
			return t.b.failing(ns, "backend-tls/"+st.src.namespace+"/"+st.src.name, "BackendTLSPolicy "+st.src.namespace+"/"+st.src.name+" cannot be honoured: "+st.why), refsResult{}
		}
		tlsProto := route.ProtocolHTTPS
		if proto == route.ProtocolGRPC {
			tlsProto = route.ProtocolGRPCS
		}
		bt := st.tls
		if t.backendCert != nil {
			// The Gateway's client certificate (spec.tls.backend).
			c := *bt
			c.ClientCertificate, c.HasClientCert, c.ID = t.backendCert, true, bt.ID+"-"+t.backendCertID
			bt = &c
		}
		set.set("BackendTLSPolicy "+bt.ID, func(be *route.Backend) { be.Protocol, be.TLS = tlsProto, bt })
		proto = tlsProto
	}
	switch {
	case proto == route.ProtocolHTTPS || proto == route.ProtocolGRPCS:
		// TLS, from the BackendTLSPolicy above.
	case proto == route.ProtocolGRPC:
		set.set("GRPC", func(be *route.Backend) { be.Protocol = route.ProtocolGRPC })
	case sp != nil && sp.AppProtocol != nil && *sp.AppProtocol == "kubernetes.io/h2c":
		// The Gateway API's backend protocol: HTTP/2 without TLS.
		set.set("H2C", func(be *route.Backend) { be.Protocol = route.ProtocolH2C })
	}
	be, reason, msg := t.b.serviceBackend(ns, name, port, set)
	if reason != "" {
		t.b.problem(src, reason, msg+"; "+then)
		return t.b.failing(ns, "unresolved/"+name+"/"+port.String(), msg), refsResult{reason: string(gatewayv1.RouteReasonBackendNotFound), msg: msg}
	}
	return be, refsResult{}
}

// failing returns the backend, shared within namespace ns, that answers
// 500 for what a Gateway API route cannot resolve (what names it in its
// Key), because of why.
func (b *builder) failing(ns, what, why string) *route.Backend {
	be := b.unavailable(backendID{namespace: ns, other: "gateway/" + what}, backendSettings{}, why)
	be.FailStatus = http.StatusInternalServerError
	return be
}

// claimGatewayRoute gives rt, for host, to the route src created at
// created, unless a route of the same match holds it: among Gateway API
// routes the older one keeps it (the spec's precedence, no Problem);
// against an Ingress the older object keeps it and the other gets a
// Problem. Wildcard hosts of Gateway API routes match at any depth.
func (b *builder) claimGatewayRoute(host string, rt *route.Route, src source, created metav1.Time) {
	hr := b.hostRoutes(host)
	if strings.HasPrefix(host, "*.") {
		hr.anyDepth = true
	}
	key := gatewayRouteKey(rt)
	if owner, taken := hr.owner[key]; taken {
		// Gateway API routes claim after every Ingress: an Ingress holds
		// this one (claimed records it), or an older Gateway API route
		// does (it keeps it, the spec's precedence).
		prev, ingress := hr.claimed[key]
		if !ingress {
			return
		}
		desc := describeRoute(host, shortPath(rt.Path), string(rt.PathType))
		if !created.Before(&prev.created) {
			b.problem(src, ReasonConflict, fmt.Sprintf("%s is already served by %s, which is older; it is not served from this %s", desc, owner, src.kind))
			return
		}
		b.problem(owner, ReasonConflict, fmt.Sprintf("%s is also routed by %s, which is older and serves it; it is not served from this %s", desc, src, owner.kind))
		hr.routes = slices.DeleteFunc(hr.routes, func(r *route.Route) bool { return r == prev.route })
		delete(hr.claimed, key)
	}
	hr.owner[key] = src
	hr.routes = append(hr.routes, rt)
}

// gatewayRouteKey is the key of rt among the routes of its host: its
// path and, when it has any, its conditions.
func gatewayRouteKey(rt *route.Route) routeKey {
	k := routeKey{pathType: rt.PathType, path: rt.Path}
	if rt.Conditions() > 0 {
		k.conds = rt.Key()
	}
	return k
}
