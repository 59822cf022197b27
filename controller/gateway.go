package controller

import (
	"cmp"
	stdtls "crypto/tls"
	"fmt"
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// The Gateway API front end: GatewayClasses whose controllerName is ours
// (Options.GatewayControllerName), their Gateways' HTTP and HTTPS
// listeners, and the HTTPRoutes attached to them, translated into claims
// on the one table builder, beside the Ingresses. What each object got
// (accepted or not, and why) is its status: GatewayAPIStatus, which the
// elected leader writes.
//
// Without a pool of Gateway addresses, every Gateway shares Postern's own
// listeners: an HTTP listener on port 80 is served by --http-addr, an
// HTTPS listener on port 443 by --https-addr (the chart's Service maps 80
// and 443 to them), and their routes merge into the table the Ingresses
// are served from. A listener on another port is not accepted
// (PortUnavailable). With one (--gateway-addresses), each Gateway listens
// on an address of its own: gateway_pool.go.

// DefaultGatewayControllerName is the controllerName of the
// GatewayClasses Postern serves (--gateway-controller-name).
const DefaultGatewayControllerName = "postern.dev/gateway-controller"

// The kinds and group of the Gateway API.
const (
	gatewayGroup         = gatewayv1.GroupName
	gatewayKind          = "Gateway"
	httpRouteKind        = "HTTPRoute"
	grpcRouteKind        = "GRPCRoute"
	backendTLSPolicyKind = "BackendTLSPolicy"
	referenceGrantKind   = "ReferenceGrant"
)

// The ports of Postern's own listeners a Gateway's listeners are served
// on.
const (
	sharedHTTPPort  = 80
	sharedHTTPSPort = 443
)

// GatewayAPIStatus is what the translation found out about each Gateway
// API object of ours: the status to write. Conditions carry no
// LastTransitionTime; the status writer keeps the one already written
// when a condition did not change.
type GatewayAPIStatus struct {
	Classes    []ClassResult   `json:"classes,omitempty"`
	Gateways   []GatewayResult `json:"gateways,omitempty"`
	HTTPRoutes []RouteResult   `json:"httpRoutes,omitempty"`
	GRPCRoutes []RouteResult   `json:"grpcRoutes,omitempty"`
	// BackendTLSPolicies are the policies that apply to a backend of a
	// route of ours, with an ancestor status per Gateway of ours.
	BackendTLSPolicies []PolicyResult `json:"backendTLSPolicies,omitempty"`
}

// PolicyResult is the status of one policy: its ancestors of ours.
type PolicyResult struct {
	Namespace string                           `json:"namespace"`
	Name      string                           `json:"name"`
	Ancestors []gatewayv1.PolicyAncestorStatus `json:"ancestors"`
}

// ClassResult is the status of one GatewayClass.
type ClassResult struct {
	Name       string                       `json:"name"`
	Conditions []metav1.Condition           `json:"conditions"`
	Features   []gatewayv1.SupportedFeature `json:"supportedFeatures"`
}

// GatewayResult is the status of one Gateway; its addresses are the
// published ones, which the status writer adds, unless Gateways have
// addresses of their own.
type GatewayResult struct {
	Namespace  string                     `json:"namespace"`
	Name       string                     `json:"name"`
	Conditions []metav1.Condition         `json:"conditions"`
	Listeners  []gatewayv1.ListenerStatus `json:"listeners"`
	// Addresses, with a pool of Gateway addresses, are the Gateway's own
	// (empty when it has none); nil means the published ones.
	Addresses []gatewayv1.GatewayStatusAddress `json:"addresses,omitempty"`
}

// RouteResult is the status of one route: a parent status per parentRef
// that names one of our Gateways.
type RouteResult struct {
	Namespace string                        `json:"namespace"`
	Name      string                        `json:"name"`
	Parents   []gatewayv1.RouteParentStatus `json:"parents"`
}

// supportedFeatures are the Gateway API features Postern implements, as
// GatewayClass status.supportedFeatures lists them (sorted). Some need
// Gateways with addresses of their own (--gateway-addresses): a listener on
// any port (GatewayPort8080, HTTPRouteDestinationPortMatching), an
// address assigned when spec.addresses asks for none (GatewayAddressEmpty),
// and listeners isolated from each other (GatewayHTTPListenerIsolation,
// GatewayHTTPSListenerDetectMisdirectedRequests); shared listeners serve
// ports 80 and 443 only, with the Ingresses' routes.
func supportedFeatures(pooled bool) []gatewayv1.SupportedFeature {
	if pooled {
		return pooledFeatures
	}
	return sharedFeatures
}

var (
	sharedFeatures = featureList(
		"Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant",
		"HTTPRouteHostRewrite", "HTTPRouteMethodMatching", "HTTPRoutePathRedirect",
		"HTTPRoutePathRewrite", "HTTPRoutePortRedirect", "HTTPRouteQueryParamMatching",
		"HTTPRouteResponseHeaderModification", "HTTPRouteSchemeRedirect",
		"HTTPRoute303RedirectStatusCode", "HTTPRoute307RedirectStatusCode", "HTTPRoute308RedirectStatusCode",
		"HTTPRouteBackendProtocolWebSocket", "HTTPRouteBackendProtocolH2C", "HTTPRouteParentRefPort", "HTTPRouteNamedRouteRule",
		"GRPCRouteNamedRouteRule", "HTTPRouteBackendRequestHeaderModification", "HTTPRouteCORS",
		"HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout",
		"HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors", "HTTPRouteRequestPercentageMirror",
		"BackendTLSPolicy", "BackendTLSPolicySANValidation", "GatewayBackendClientCertificate",
	)
	pooledFeatures = featureList(append(featureNames(sharedFeatures),
		"GatewayPort8080", "GatewayAddressEmpty", "HTTPRouteDestinationPortMatching",
		"GatewayHTTPListenerIsolation", "GatewayHTTPSListenerDetectMisdirectedRequests", "GatewayStaticAddresses",
		"GatewayFrontendClientCertificateValidation", "GatewayFrontendClientCertificateValidationInsecureFallback")...)
)

func featureList(names ...string) []gatewayv1.SupportedFeature {
	slices.Sort(names)
	out := make([]gatewayv1.SupportedFeature, len(names))
	for i, n := range names {
		out[i] = gatewayv1.SupportedFeature{Name: gatewayv1.FeatureName(n)}
	}
	return out
}

func featureNames(fs []gatewayv1.SupportedFeature) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f.Name)
	}
	return out
}

// gatewayState is one Gateway of ours while it is translated.
type gatewayState struct {
	gw        *gatewayv1.Gateway
	src       source
	listeners []*listenerState
	// With a pool of Gateway addresses: addr is the Gateway's own (not
	// valid: it got none, and addrReason and addrMsg say why), and ports
	// the builders of its listeners' tables, by port.
	addr                netip.Addr
	addrReason, addrMsg string
	ports               map[gatewayv1.PortNumber]*builder
	// backendCert is the client certificate its routes present to TLS
	// backends (spec.tls.backend), backendCertID names it; backendRefs is
	// the Gateway's ResolvedRefs condition when it names one.
	backendCert   *stdtls.Certificate
	backendCertID string
	backendRefs   *metav1.Condition
}

// listenerState is one listener of a Gateway while it is translated.
type listenerState struct {
	gw   *gatewayState
	spec *gatewayv1.Listener
	// host is the listener's hostname, normalised; "" for any host.
	host string
	// kinds are the route kinds the listener takes.
	kinds []gatewayv1.RouteGroupKind
	// accepted says the listener is valid (its Accepted condition);
	// serving that it also resolved its references and serves routes
	// (Programmed). conds are its conditions by type.
	accepted, serving bool
	conds             map[string]metav1.Condition
	attached          int32
	// cert is an HTTPS listener's first certificate, from Secret secret
	// ("namespace/name"); claimed once the listener serves.
	cert   *route.Certificate
	secret string
	// hosts are the hostnames routes attached with ("" for any), by the
	// kind of the first route to attach with each; kindHosts counts them
	// by kind.
	hosts     map[string]string
	kindHosts map[string]int
	// clientValidation is an HTTPS listener's client certificate
	// validation (gateway_frontend.go), clientValidationID its content's.
	clientValidation   *route.ClientValidation
	clientValidationID string
	// rb builds the routes attached to the listener, with addresses of
	// Gateways' own (a route.Section); nil in shared mode, or until a
	// route attaches.
	rb *builder
}

// setCond sets the condition t of l.
func (l *listenerState) setCond(t string, ok bool, reason, msg string) {
	l.conds[t] = condition(t, ok, reason, msg, l.gw.gw.Generation)
}

// condition returns a condition of type t at generation gen.
func condition(t string, ok bool, reason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// gatewayTranslation is the Gateway API part of one Build.
type gatewayTranslation struct {
	b        *builder
	opts     Options
	grants   []*gatewayv1.ReferenceGrant
	nsLabels map[string]labels.Set
	gateways map[types.NamespacedName]*gatewayState
	status   *GatewayAPIStatus
	// The BackendTLSPolicies (gateway_backendtls.go): all of them, oldest
	// first; the one holding each target; the Gateways with a route to
	// each Service; the Services the route being translated uses.
	btlsAll   []*backendTLSState
	btls      map[backendTLSTarget]*backendTLSState
	btlsUsers map[types.NamespacedName][]*gatewayState
	services  []types.NamespacedName
	// backendCert (and its ID) is the client certificate of the Gateway
	// whose routes are being translated, for their TLS backends.
	backendCert   *stdtls.Certificate
	backendCertID string
}

// addGateways translates the Gateway API objects of snap and returns
// their status.
func addGateways(b *builder, snap Snapshot, opts Options) *GatewayAPIStatus {
	t := &gatewayTranslation{
		b:        b,
		opts:     opts,
		grants:   snap.ReferenceGrants,
		nsLabels: make(map[string]labels.Set),
		gateways: make(map[types.NamespacedName]*gatewayState),
		status:   &GatewayAPIStatus{},
	}
	for _, ns := range snap.Namespaces {
		if ns != nil {
			t.nsLabels[ns.Name] = ns.Labels
		}
	}
	ctrl := opts.gatewayControllerName()
	classes := make(map[string]bool)
	for _, gc := range sortedByAge(snap.GatewayClasses, func(c *gatewayv1.GatewayClass) *metav1.ObjectMeta { return &c.ObjectMeta }) {
		if string(gc.Spec.ControllerName) != ctrl || classes[gc.Name] {
			continue
		}
		classes[gc.Name] = true
		t.status.Classes = append(t.status.Classes, ClassResult{
			Name:       gc.Name,
			Conditions: []metav1.Condition{condition(string(gatewayv1.GatewayClassConditionStatusAccepted), true, string(gatewayv1.GatewayClassReasonAccepted), "Postern serves this class", gc.Generation)},
			Features:   supportedFeatures(opts.GatewayAddresses.IsValid()),
		})
	}
	var gws []*gatewayState
	for _, gw := range sortedByAge(snap.Gateways, func(g *gatewayv1.Gateway) *metav1.ObjectMeta { return &g.ObjectMeta }) {
		k := types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}
		if !classes[string(gw.Spec.GatewayClassName)] || t.gateways[k] != nil {
			continue
		}
		gs := &gatewayState{gw: gw, src: source{kind: gatewayKind, namespace: gw.Namespace, name: gw.Name}}
		t.gateways[k] = gs
		gws = append(gws, gs)
	}
	if t.pooled() {
		t.assignAddresses(gws)
	}
	for _, gs := range gws {
		t.gateway(gs)
	}
	t.backendTLSPolicies(&snap)
	// Routes attach oldest first, whatever their kind: the older of an
	// HTTPRoute and a GRPCRoute keeps a hostname both ask a listener for.
	type pending struct {
		meta   *metav1.ObjectMeta
		attach func()
	}
	var routes []*pending
	for _, hr := range snap.HTTPRoutes {
		if hr != nil {
			routes = append(routes, &pending{&hr.ObjectMeta, func() {
				if res, ok := t.httpRoute(hr); ok {
					t.status.HTTPRoutes = append(t.status.HTTPRoutes, res)
				}
			}})
		}
	}
	for _, gr := range snap.GRPCRoutes {
		if gr != nil {
			routes = append(routes, &pending{&gr.ObjectMeta, func() {
				if res, ok := t.grpcRoute(gr); ok {
					t.status.GRPCRoutes = append(t.status.GRPCRoutes, res)
				}
			}})
		}
	}
	for _, r := range sortedByAge(routes, func(p *pending) *metav1.ObjectMeta { return p.meta }) {
		r.attach()
	}
	t.status.BackendTLSPolicies = t.backendTLSResults()
	for _, gs := range gws {
		res := gs.result()
		res.Addresses = t.statusAddresses(gs)
		t.status.Gateways = append(t.status.Gateways, res)
	}
	b.gatewayListeners = t.pooledListeners(gws)
	return t.status
}

// sortedByAge returns the objects of list oldest first (then by namespace
// and name), nil ones left out.
func sortedByAge[T comparable](list []T, meta func(T) *metav1.ObjectMeta) []T {
	var zero T
	out := make([]T, 0, len(list))
	for _, o := range list {
		if o != zero {
			out = append(out, o)
		}
	}
	slices.SortStableFunc(out, func(a, b T) int {
		am, bm := meta(a), meta(b)
		return cmp.Or(
			am.CreationTimestamp.Compare(bm.CreationTimestamp.Time),
			cmp.Compare(am.Namespace, bm.Namespace),
			cmp.Compare(am.Name, bm.Name),
		)
	})
	return out
}

// result returns the status of gs.
func (gs *gatewayState) result() (res GatewayResult) {
	gen := gs.gw.Generation
	res = GatewayResult{Namespace: gs.gw.Namespace, Name: gs.gw.Name, Listeners: []gatewayv1.ListenerStatus{}}
	valid := 0
	for _, l := range gs.listeners {
		if l.accepted {
			valid++
		}
		kinds := l.kinds
		if kinds == nil {
			kinds = []gatewayv1.RouteGroupKind{}
		}
		ls := gatewayv1.ListenerStatus{Name: l.spec.Name, SupportedKinds: kinds, AttachedRoutes: l.attached}
		for _, typ := range listenerConditionOrder {
			if c, ok := l.conds[typ]; ok {
				ls.Conditions = append(ls.Conditions, c)
			}
		}
		res.Listeners = append(res.Listeners, ls)
	}
	accepted, programmed := string(gatewayv1.GatewayConditionAccepted), string(gatewayv1.GatewayConditionProgrammed)
	switch gs.addrReason {
	case string(gatewayv1.GatewayReasonUnsupportedAddress):
		res.Conditions = []metav1.Condition{
			condition(accepted, false, gs.addrReason, gs.addrMsg, gen),
			condition(programmed, false, string(gatewayv1.GatewayReasonAddressNotUsable), gs.addrMsg, gen),
		}
		return res
	case string(gatewayv1.GatewayReasonAddressNotUsable), string(gatewayv1.GatewayReasonAddressNotAssigned):
		res.Conditions = []metav1.Condition{
			condition(accepted, true, string(gatewayv1.GatewayReasonAccepted), "", gen),
			condition(programmed, false, gs.addrReason, gs.addrMsg, gen),
		}
		return res
	}
	defer func() {
		if gs.backendRefs != nil {
			res.Conditions = append(res.Conditions, *gs.backendRefs)
		}
		for _, l := range gs.listeners {
			if l.serving && l.clientValidation != nil && l.clientValidation.InsecureFallback {
				res.Conditions = append(res.Conditions, condition(string(gatewayv1.GatewayConditionInsecureFrontendValidationMode), true,
					string(gatewayv1.GatewayReasonConfigurationChanged), "client certificates are asked for but not required (AllowInsecureFallback)", gen))
				return
			}
		}
	}()
	switch {
	case valid == len(gs.listeners):
		res.Conditions = []metav1.Condition{
			condition(accepted, true, string(gatewayv1.GatewayReasonAccepted), "", gen),
			condition(programmed, true, string(gatewayv1.GatewayReasonProgrammed), "", gen),
		}
	case valid > 0:
		res.Conditions = []metav1.Condition{
			condition(accepted, true, string(gatewayv1.GatewayReasonListenersNotValid), fmt.Sprintf("%d of %d listeners are not valid", len(gs.listeners)-valid, len(gs.listeners)), gen),
			condition(programmed, true, string(gatewayv1.GatewayReasonProgrammed), "", gen),
		}
	default:
		res.Conditions = []metav1.Condition{
			condition(accepted, false, string(gatewayv1.GatewayReasonListenersNotValid), "no listener is valid", gen),
			condition(programmed, false, string(gatewayv1.GatewayReasonInvalid), "no listener is valid", gen),
		}
	}
	return res
}

// listenerConditionOrder is the order listener conditions are written in.
var listenerConditionOrder = []string{
	string(gatewayv1.ListenerConditionAccepted),
	string(gatewayv1.ListenerConditionConflicted),
	string(gatewayv1.ListenerConditionProgrammed),
	string(gatewayv1.ListenerConditionResolvedRefs),
}

// granted reports whether a ReferenceGrant in toNS lets objects of kind
// fromKind in fromNS refer to the object toName (any, when the grant
// names none) of group toGroup and kind toKind.
func (t *gatewayTranslation) granted(fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	for _, g := range t.grants {
		if g == nil || g.Namespace != toNS {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gatewayv1.ReferenceGrantFrom) bool {
			return string(f.Group) == gatewayGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		if !from {
			continue
		}
		to := slices.ContainsFunc(g.Spec.To, func(to gatewayv1.ReferenceGrantTo) bool {
			return string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || *to.Name == "" || string(*to.Name) == toName)
		})
		if to {
			return true
		}
	}
	return false
}

// allows reports whether listener l takes routes of kind from namespace
// ns.
func (t *gatewayTranslation) allows(l *listenerState, kind, ns string) bool {
	if !slices.ContainsFunc(l.kinds, func(k gatewayv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
		return false
	}
	from := gatewayv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := l.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && s.Matches(t.nsLabels[ns])
	case gatewayv1.NamespacesFromSame:
		return ns == l.gw.gw.Namespace
	}
	return false
}

// refParts returns the group, kind and namespace of a Gateway API
// object reference, with the defaults for those it leaves out: the core
// group, kind and namespace ns.
func refParts(group *gatewayv1.Group, kind *gatewayv1.Kind, namespace *gatewayv1.Namespace, defKind, ns string) (string, string, string) {
	g, k := "", defKind
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	if namespace != nil && *namespace != "" {
		ns = string(*namespace)
	}
	return g, k, ns
}

// gatewayControllerName returns GatewayControllerName or its default.
func (o Options) gatewayControllerName() string {
	if o.GatewayControllerName == "" {
		return DefaultGatewayControllerName
	}
	return o.GatewayControllerName
}
