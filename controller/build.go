package controller

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
	t, problems, _ := build(snap, opts)
	return t, problems
}

// build is Build, and the status of the Gateway API objects.
func build(snap Snapshot, opts Options) (*route.Table, []Problem, *GatewayAPIStatus) {
	b := newBuilder(snap, opts)
	addIngresses(b, snap, opts)
	b.gatewayStatus = addGateways(b, snap, opts)
	t, problems := b.finish()
	return t, problems, b.gatewayStatus
}

// builder is the table builder of one Build call, the part of the
// translation that every front end shares. Front ends (Ingress today) read
// their objects and make claims on it: routes of a host, the default
// route, TLS hosts, each in the name of a source. The builder resolves the
// claims' backends from Services and EndpointSlices and their certificates
// from Secrets, settles conflicts, and collects the Problems.
//
// Claims are first come, first served: a front end makes them oldest
// object first, so that the oldest one wins a conflict.
type builder struct {
	opts     Options
	secrets  map[types.NamespacedName]*corev1.Secret
	cms      map[types.NamespacedName]*corev1.ConfigMap
	certs    map[types.NamespacedName]certResult // parsed this build
	tls      map[string]*tlsClaim                // by normalised host
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice // by namespace and service name
	backends map[backendID]*route.Backend                          // so that routes share them
	hosts    map[string]*hostRoutes                                // by normalised host, "" for the catch-all
	def      *route.Route                                          // the table's default route, nil for none
	defOwner source                                                // who claimed def
	problems []Problem
	// nginx is what ingress-nginx's annotations set per host.
	nginx nginxHosts
	// canaries are the ingress-nginx canary Ingresses, attached once
	// every mainline has claimed its routes.
	canaries []*canaryTranslation
	// gatewayDefault is the certificate of the first HTTPS Gateway
	// listener without a hostname: the default certificate unless
	// Options.DefaultCertificate names one.
	gatewayDefault *route.Certificate
	// gatewayStatus is what the Gateway API translation found.
	gatewayStatus *GatewayAPIStatus
	// gatewayListeners are the tables of the Gateways with addresses of
	// their own (Options.GatewayAddresses).
	gatewayListeners []*route.Listener
}

// newBuilder returns a builder that resolves backends and certificates
// from the Services, EndpointSlices and Secrets of snap.
func newBuilder(snap Snapshot, opts Options) *builder {
	return &builder{
		opts:     opts,
		secrets:  indexSecrets(snap.Secrets),
		cms:      indexConfigMaps(snap.ConfigMaps),
		certs:    make(map[types.NamespacedName]certResult),
		tls:      make(map[string]*tlsClaim),
		services: indexServices(snap.Services),
		slices:   indexEndpointSlices(snap.EndpointSlices),
		backends: make(map[backendID]*route.Backend),
		hosts:    make(map[string]*hostRoutes),
	}
}

// source names the object a claim is made for, and that its Problems are
// about: its kind ("Ingress"), namespace and name.
type source struct {
	kind, namespace, name string
}

// route returns the namespace and name of s, as the table shows them.
func (s source) route() route.Source {
	return route.Source{Namespace: s.namespace, Name: s.name}
}

// String returns "Kind namespace/name", as messages name an object.
func (s source) String() string {
	return s.kind + " " + s.route().String()
}

// problem records a Problem with the object src.
func (b *builder) problem(src source, reason, msg string) {
	b.problems = append(b.problems, Problem{
		Kind:      src.kind,
		Namespace: src.namespace,
		Name:      src.name,
		Reason:    reason,
		Message:   msg,
	})
}

// finish assembles the routing table from every claim, and returns it with
// the Problems, sorted. It ends the build.
func (b *builder) finish() (*route.Table, []Problem) {
	table := b.table().WithTLS(b.tlsHosts()).WithListeners(b.gatewayListeners)
	table.DefaultCertificate = b.defaultCertificate()
	b.opts.Certificates.sweep()
	return table, sortProblems(b.problems)
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
