package controller

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// indexByName indexes objects by namespace and name. Of two copies of
// one (a folder of manifests can hold both) the same one is kept whatever
// their order.
func indexByName[T comparable](list []T, meta func(T) *metav1.ObjectMeta) map[types.NamespacedName]T {
	var zero T
	m := make(map[types.NamespacedName]T, len(list))
	for _, o := range list {
		if o == zero {
			continue
		}
		om := meta(o)
		k := types.NamespacedName{Namespace: om.Namespace, Name: om.Name}
		if cur, ok := m[k]; ok && compareCopies(meta(cur), om, cur, o) <= 0 {
			continue
		}
		m[k] = o
	}
	return m
}

// indexServices indexes Services by namespace and name (indexByName).
func indexServices(list []*corev1.Service) map[types.NamespacedName]*corev1.Service {
	return indexByName(list, func(s *corev1.Service) *metav1.ObjectMeta { return &s.ObjectMeta })
}

// indexEndpointSlices groups EndpointSlices by namespace and the Service
// their kubernetes.io/service-name label names. Slices without the label
// belong to no Service and are left out.
func indexEndpointSlices(list []*discoveryv1.EndpointSlice) map[types.NamespacedName][]*discoveryv1.EndpointSlice {
	m := make(map[types.NamespacedName][]*discoveryv1.EndpointSlice)
	for _, s := range list {
		if s == nil {
			continue
		}
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			k := types.NamespacedName{Namespace: s.Namespace, Name: svc}
			m[k] = append(m[k], s)
		}
	}
	return m
}

// backendSettings are how a front end wants the proxy to talk to the
// Service ports of its routes: the route.Backend fields that are not the
// builder's. The zero value is the defaults; backends with different
// settings are backends of their own, even for one Service port.
type backendSettings struct {
	// fields holds the settings in the route.Backend fields of their names
	// (Balancer, Protocol, ConnectTimeout). The fields
	// that name the Service port, and Endpoints and Unavailable, are the
	// builder's: it overwrites them.
	fields route.Backend
	// id names each setting changed from its default, in the order they
	// were set ("|least-request|HTTPS"); it ends the Key of the
	// backends with these settings, and tells them apart.
	id string
}

// set changes one setting from its default: apply sets it in the fields,
// and part names it, one value to one part ("connect-timeout=5s"), in the Key of
// the backends that get it.
func (s *backendSettings) set(part string, apply func(*route.Backend)) {
	apply(&s.fields)
	s.id += "|" + part
}

// servicePort names a port of a Service: by number, or when number is 0
// by name.
type servicePort struct {
	number int32
	name   string
}

// String returns the number, or the name when there is no number.
func (p servicePort) String() string {
	if p.number != 0 {
		return strconv.Itoa(int(p.number))
	}
	return p.name
}

// backendID identifies a backend within one Build; unlike Backend.Key it
// cannot be ambiguous, whatever names a folder of manifests uses.
type backendID struct {
	namespace, service, port string
	settings                 string // backendSettings.id
	other                    string // for backends that are not a Service port
}

// serviceBackend returns the backend for port of Service name in namespace
// ns with settings set, shared by every route that asks for the same. It
// always returns a backend; when that cannot be served it is Unavailable
// (the route answers 503), and reason and what say why, for a Problem.
func (b *builder) serviceBackend(ns, name string, port servicePort, set backendSettings) (be *route.Backend, reason, what string) {
	id := backendID{namespace: ns, service: name, port: port.String(), settings: set.id}
	svc := b.services[types.NamespacedName{Namespace: ns, Name: name}]
	switch {
	case svc == nil:
		return b.unavailable(id, set, "service not found"),
			ReasonServiceNotFound, fmt.Sprintf("service %s not found in namespace %s", quoteShort(name), quoteShort(ns))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return b.unavailable(id, set, "ExternalName services are not supported yet"),
			ReasonUnsupportedBackend, fmt.Sprintf("service %s in namespace %s is of type ExternalName, which is not supported yet", quoteShort(name), quoteShort(ns))
	case id.port == "":
		return b.unavailable(id, set, "no port"),
			ReasonPortNotFound, fmt.Sprintf("the backend names no port of service %s", quoteShort(name))
	}
	sp := findServicePort(svc, port)
	if sp == nil {
		what := fmt.Sprintf("service %s in namespace %s has no port %s", quoteShort(name), quoteShort(ns), id.port)
		if port.number == 0 {
			what = fmt.Sprintf("service %s in namespace %s has no port named %s", quoteShort(name), quoteShort(ns), quoteShort(id.port))
		}
		return b.unavailable(id, set, "port not found"), ReasonPortNotFound, what
	}
	if be := b.backends[id]; be != nil {
		return be, "", ""
	}
	be = newBackend(id, set)
	if be.ServiceUpstream {
		be.Endpoints = clusterIPEndpoint(svc, sp)
	} else {
		be.Endpoints = b.endpoints(ns, name, sp.Name)
	}
	b.backends[id] = be
	return be, "", ""
}

// clusterIPEndpoint returns the endpoint of service-upstream: the
// Service's ClusterIP and port; none for a headless Service.
func clusterIPEndpoint(svc *corev1.Service, sp *corev1.ServicePort) []route.Endpoint {
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return nil
	}
	return []route.Endpoint{{Address: netip.AddrPortFrom(ip, uint16(sp.Port)).String()}}
}

// unavailableBackend returns the backend, shared within namespace ns, for
// what a front end cannot resolve to a Service port: what names it in its
// Key ("ns/what"), and why says why it answers 503. It has the default
// settings.
func (b *builder) unavailableBackend(ns, what, why string) *route.Backend {
	return b.unavailable(backendID{namespace: ns, other: what}, backendSettings{}, why)
}

// unavailable returns the shared backend for id, with settings set, that
// answers 503 because of why.
func (b *builder) unavailable(id backendID, set backendSettings, why string) *route.Backend {
	if be := b.backends[id]; be != nil {
		return be
	}
	be := newBackend(id, set)
	be.Unavailable = why
	b.backends[id] = be
	return be
}

// newBackend returns a backend without endpoints for id, with settings
// set. Its Key is "namespace/service:port" and the settings' id, so that
// routes with different settings for one Service port get backends of
// their own.
func newBackend(id backendID, set backendSettings) *route.Backend {
	be := set.fields
	be.Key = id.namespace + "/" + id.service + ":" + id.port + id.settings
	if id.other != "" {
		be.Key = id.namespace + "/" + id.other + id.settings
	}
	be.Namespace, be.Service, be.Port = id.namespace, id.service, id.port
	be.Endpoints, be.Unavailable = []route.Endpoint{}, ""
	return &be
}

// findServicePort finds the Service port p names, by number (preferring
// TCP when a number is there for several protocols) or by name.
func findServicePort(svc *corev1.Service, p servicePort) *corev1.ServicePort {
	var found *corev1.ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		switch {
		case p.number != 0 && sp.Port == p.number:
			if sp.Protocol == "" || sp.Protocol == corev1.ProtocolTCP {
				return sp
			}
			if found == nil {
				found = sp
			}
		case p.number == 0 && sp.Name == p.name:
			return sp
		}
	}
	return found
}

// addrState is what Build knows about one address while it merges slices.
type addrState struct {
	ready, terminating  bool   // usable as a ready, or as a serving-but-terminating, endpoint
	readyZone, termZone string // zone of the copies of each kind
}

// endpoints returns the addresses behind port portName of Service svc in
// namespace ns, sorted: the ready ones, or when none is ready the serving
// but terminating ones. The slice port with the Service port's name gives
// the port to dial. An address in several slices counts once, ready if any
// copy is, so the result does not depend on the order of the slices.
func (b *builder) endpoints(ns, svc, portName string) []route.Endpoint {
	all := make(map[string]*addrState)
	for _, s := range b.slices[types.NamespacedName{Namespace: ns, Name: svc}] {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue // FQDN slices name hosts, not addresses
		}
		port, ok := slicePort(s, portName)
		if !ok {
			continue
		}
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			if len(ep.Addresses) == 0 {
				continue
			}
			ip, ok := parseEndpointIP(ep.Addresses[0], s.AddressType)
			if !ok {
				continue
			}
			c := ep.Conditions
			ready := c.Ready == nil || *c.Ready
			serving := ready
			if c.Serving != nil {
				serving = *c.Serving
			}
			terminating := c.Terminating != nil && *c.Terminating
			zone := ""
			if ep.Zone != nil {
				zone = *ep.Zone
			}
			addr := net.JoinHostPort(ip, port)
			e := all[addr]
			if e == nil {
				e = &addrState{}
				all[addr] = e
			}
			switch {
			case ready && !terminating:
				e.ready = true
				e.readyZone = minZone(e.readyZone, zone)
			case serving && terminating:
				e.terminating = true
				e.termZone = minZone(e.termZone, zone)
			}
		}
	}
	out := []route.Endpoint{}
	for addr, e := range all {
		if e.ready {
			out = append(out, route.Endpoint{Address: addr, Zone: e.readyZone})
		}
	}
	if len(out) == 0 {
		for addr, e := range all {
			if e.terminating {
				out = append(out, route.Endpoint{Address: addr, Terminating: true, Zone: e.termZone})
			}
		}
	}
	slices.SortFunc(out, func(a, b route.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// slicePort returns the port number of the slice port named name (an unset
// name is ""), if it has a valid one.
func slicePort(s *discoveryv1.EndpointSlice, name string) (string, bool) {
	for _, p := range s.Ports {
		n := ""
		if p.Name != nil {
			n = *p.Name
		}
		if n != name {
			continue
		}
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			return "", false
		}
		return strconv.Itoa(int(*p.Port)), true
	}
	return "", false
}

// parseEndpointIP returns the canonical form of an endpoint address of the
// slice's family. Anything else (a name, an address with a zone, the other
// family) is skipped: the API server refuses such slices, and a folder of
// manifests must not make the proxy dial something unexpected.
func parseEndpointIP(s string, family discoveryv1.AddressType) (string, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return "", false
	}
	if (family == discoveryv1.AddressTypeIPv4) != ip.Is4() {
		return "", false
	}
	return ip.String(), true
}

// minZone keeps the smallest non-empty zone, so that copies of an address
// with different zones give the same answer in any order.
func minZone(cur, z string) string {
	if cur == "" || (z != "" && z < cur) {
		return z
	}
	return cur
}
