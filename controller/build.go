package controller

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// Build translates snap into the routing table the proxy serves, and lists
// every Problem it met on the way. It is a pure function: it never changes
// snap, does no I/O and returns the same table, byte for byte, for the same
// objects in any order.
//
// Only the Ingresses of our class (see Options) are read. They are taken
// oldest first (creationTimestamp, then namespace, then name): when two
// claim the same host, path and path type, or both set a default backend,
// the older one keeps it and the other gets a Problem. Whatever one Ingress
// gets wrong (a bad host, a bad path, a missing Service) costs that rule,
// path or backend only; the rest of the table is built.
func Build(snap Snapshot, opts Options) (*route.Table, []Problem) {
	b := &builder{
		opts:     opts,
		secrets:  indexSecrets(snap.Secrets),
		certs:    make(map[types.NamespacedName]certResult),
		tls:      make(map[string]*tlsClaim),
		services: indexServices(snap.Services),
		slices:   indexEndpointSlices(snap.EndpointSlices),
		backends: make(map[backendID]*route.Backend),
		hosts:    make(map[string]*hostRoutes),
	}
	cls := newClassifier(snap.IngressClasses, opts)
	for _, ing := range b.ourIngresses(snap.Ingresses, cls) {
		b.addIngress(ing)
	}
	table := b.table().WithTLS(b.tlsHosts())
	table.DefaultCertificate = b.defaultCertificate()
	opts.Certificates.sweep()
	return table, sortProblems(b.problems)
}

// builder holds the state of one Build call.
type builder struct {
	opts     Options
	secrets  map[types.NamespacedName]*corev1.Secret
	certs    map[types.NamespacedName]certResult // parsed this build
	tls      map[string]*tlsClaim                // by normalised host
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice // by namespace and service name
	backends map[backendID]*route.Backend                          // so that routes share them
	hosts    map[string]*hostRoutes                                // by normalised host, "" for the catch-all
	def      *route.Route                                          // the table's default route, nil for none
	problems []Problem
}

// hostRoutes collects the routes of one virtual host and who claimed each.
type hostRoutes struct {
	routes []*route.Route
	owner  map[routeKey]route.Source
}

// routeKey is what two routes of one host must not share.
type routeKey struct {
	pathType route.PathType
	path     string
}

// ourIngresses returns the Ingresses of our class, oldest first, each
// namespace/name only once.
func (b *builder) ourIngresses(all []*networkingv1.Ingress, cls classifier) []*networkingv1.Ingress {
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
			b.problem(ing, ReasonConflict, fmt.Sprintf("Ingress %s/%s appears more than once; only the oldest copy is served", ing.Namespace, ing.Name))
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
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return compareCopies(&a.ObjectMeta, &b.ObjectMeta, a, b)
}

// compareCopies orders two objects with the same kind, namespace and name
// deterministically: by age, UID, resourceVersion, and as a last resort by
// their JSON encoding, which is canonical (struct order, sorted map keys).
func compareCopies(am, bm *metav1.ObjectMeta, a, b any) int {
	if c := am.CreationTimestamp.Compare(bm.CreationTimestamp.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(am.UID, bm.UID); c != 0 {
		return c
	}
	if c := cmp.Compare(am.ResourceVersion, bm.ResourceVersion); c != 0 {
		return c
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Compare(ja, jb)
}

// addIngress adds the default backend and the rules of one of our
// Ingresses, in that order.
func (b *builder) addIngress(ing *networkingv1.Ingress) {
	cfg, msgs := parseIngressConfig(ing.Annotations)
	for _, m := range msgs {
		b.problem(ing, ReasonInvalidAnnotation, m)
	}
	if ing.Spec.DefaultBackend != nil {
		b.addDefaultBackend(ing, ing.Spec.DefaultBackend, cfg)
	}
	b.addTLS(ing, cfg)
	for i := range ing.Spec.Rules {
		rule := &ing.Spec.Rules[i]
		host, msg := normalizeHost(rule.Host)
		if msg != "" {
			b.problem(ing, ReasonInvalidHost, msg)
			continue
		}
		if rule.HTTP == nil {
			// A host without paths adds nothing: its requests go where
			// they would go without the rule.
			continue
		}
		for j := range rule.HTTP.Paths {
			b.addPath(ing, host, &rule.HTTP.Paths[j], cfg)
		}
	}
}

// addDefaultBackend makes ing's default backend the table's default route,
// unless an older Ingress already did.
func (b *builder) addDefaultBackend(ing *networkingv1.Ingress, ib *networkingv1.IngressBackend, cfg ingressConfig) {
	src := sourceOf(ing)
	if b.def != nil {
		b.problem(ing, ReasonConflict, fmt.Sprintf("the default backend is already set by Ingress %s; this Ingress's default backend is ignored", b.def.Source))
		return
	}
	be, reason, what := b.backend(ing.Namespace, ib, cfg)
	if reason != "" {
		b.problem(ing, reason, what+"; the default backend answers 503")
	}
	b.def = &route.Route{Backend: be, Source: src}
}

// addPath adds one path of a rule of ing for host, unless it is invalid or
// someone older already serves the same host, path and type.
func (b *builder) addPath(ing *networkingv1.Ingress, host string, p *networkingv1.HTTPIngressPath, cfg ingressConfig) {
	rp := normalizePath(p.PathType, p.Path)
	desc := describeRoute(host, rp.shown, rp.declared)
	if rp.reason != "" {
		b.problem(ing, rp.reason, desc+" "+rp.msg)
		return
	}
	hr := b.hosts[host]
	if hr == nil {
		hr = &hostRoutes{owner: make(map[routeKey]route.Source)}
		b.hosts[host] = hr
	}
	src := sourceOf(ing)
	key := routeKey{rp.pathType, rp.path}
	if owner, taken := hr.owner[key]; taken {
		if string(rp.pathType) != rp.declared {
			desc = describeRoute(host, rp.shown, rp.declared+", matched as "+string(rp.pathType))
		}
		if owner == src {
			b.problem(ing, ReasonConflict, desc+" appears more than once in this Ingress; the first one is served")
		} else {
			b.problem(ing, ReasonConflict, fmt.Sprintf("%s is already served by Ingress %s; it is not served from this Ingress", desc, owner))
		}
		return
	}
	hr.owner[key] = src
	be, reason, what := b.backend(ing.Namespace, &p.Backend, cfg)
	if reason != "" {
		b.problem(ing, reason, what+"; "+desc+" answers 503")
	}
	hr.routes = append(hr.routes, &route.Route{PathType: rp.pathType, Path: rp.path, Backend: be, Source: src})
}

// table assembles the routing table from what was added.
func (b *builder) table() *route.Table {
	names := make([]string, 0, len(b.hosts))
	for h := range b.hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	vhosts := make([]*route.VirtualHost, 0, len(names))
	for _, h := range names {
		vhosts = append(vhosts, route.NewVirtualHost(h, b.hosts[h].routes))
	}
	return route.NewTable(vhosts, b.def)
}

// problem records a Problem with one of our Ingresses.
func (b *builder) problem(ing *networkingv1.Ingress, reason, msg string) {
	b.problems = append(b.problems, Problem{
		Kind:      "Ingress",
		Namespace: ing.Namespace,
		Name:      ing.Name,
		Reason:    reason,
		Message:   msg,
	})
}

// sortProblems sorts problems by kind, namespace, name, reason and message,
// and drops exact repeats (two rules with the same bad host, say).
func sortProblems(ps []Problem) []Problem {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			strings.Compare(a.Kind, b.Kind),
			strings.Compare(a.Namespace, b.Namespace),
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.Reason, b.Reason),
			strings.Compare(a.Message, b.Message),
		)
	})
	return slices.Compact(ps)
}

func sourceOf(ing *networkingv1.Ingress) route.Source {
	return route.Source{Namespace: ing.Namespace, Name: ing.Name}
}
