package controller

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// indexServices indexes Services by namespace and name. Of two copies of
// one (a folder of manifests can hold both) the same one is kept whatever
// their order.
func indexServices(list []*corev1.Service) map[types.NamespacedName]*corev1.Service {
	m := make(map[types.NamespacedName]*corev1.Service, len(list))
	for _, s := range list {
		if s == nil {
			continue
		}
		k := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
		if cur := m[k]; cur != nil && compareCopies(&cur.ObjectMeta, &s.ObjectMeta, cur, s) <= 0 {
			continue
		}
		m[k] = s
	}
	return m
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

// backendID identifies a backend within one Build; unlike Backend.Key it
// cannot be ambiguous, whatever names a folder of manifests uses.
type backendID struct {
	namespace, service, port, balancer string
	protocol                           route.Protocol
	settings                           backendSettings
	other                              string // for backends that are not a Service port
}

// backend resolves an Ingress backend in namespace ns. It always returns a
// backend, shared by every route with the same Service, port and
// annotation settings (balancer, protocol, retries, timeouts, body limit);
// when the backend cannot be served it is Unavailable (the route answers
// 503), and reason and what say why, for a Problem.
func (b *builder) backend(ns string, ib *networkingv1.IngressBackend, cfg ingressConfig) (be *route.Backend, reason, what string) {
	switch {
	case ib.Service != nil && ib.Resource != nil:
		return b.unavailable(backendID{namespace: ns, other: "(service and resource)"}, "invalid backend"),
			ReasonUnsupportedBackend, "the backend sets both a service and a resource"
	case ib.Resource != nil:
		kind := ib.Resource.Kind
		if g := ib.Resource.APIGroup; g != nil && *g != "" {
			kind += "." + *g
		}
		return b.unavailable(backendID{namespace: ns, other: "resource:" + kind + "/" + ib.Resource.Name}, "resource backends are not supported"),
			ReasonUnsupportedBackend, fmt.Sprintf("the backend is resource %s of kind %s, and resource backends are not supported", quoteShort(ib.Resource.Name), quoteShort(kind))
	case ib.Service == nil:
		return b.unavailable(backendID{namespace: ns, other: "(none)"}, "no backend"),
			ReasonNoBackend, "the backend sets neither a service nor a resource"
	case ib.Service.Name == "":
		return b.unavailable(backendID{namespace: ns, other: "(none)"}, "no backend"),
			ReasonNoBackend, "the backend names no service"
	}
	name, sbp := ib.Service.Name, ib.Service.Port
	// The API server refuses a port with both a name and a number; the
	// number is what such a manifest gets.
	port := sbp.Name
	if sbp.Number != 0 {
		port = strconv.Itoa(int(sbp.Number))
	}
	id := backendID{namespace: ns, service: name, port: port, balancer: cfg.balancer, protocol: cfg.protocol, settings: cfg.backend}
	svc := b.services[types.NamespacedName{Namespace: ns, Name: name}]
	switch {
	case svc == nil:
		return b.unavailable(id, "service not found"),
			ReasonServiceNotFound, fmt.Sprintf("service %s not found in namespace %s", quoteShort(name), quoteShort(ns))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return b.unavailable(id, "ExternalName services are not supported yet"),
			ReasonUnsupportedBackend, fmt.Sprintf("service %s in namespace %s is of type ExternalName, which is not supported yet", quoteShort(name), quoteShort(ns))
	case port == "":
		return b.unavailable(id, "no port"),
			ReasonPortNotFound, fmt.Sprintf("the backend names no port of service %s", quoteShort(name))
	}
	sp := findServicePort(svc, sbp)
	if sp == nil {
		what := fmt.Sprintf("service %s in namespace %s has no port %s", quoteShort(name), quoteShort(ns), port)
		if sbp.Number == 0 {
			what = fmt.Sprintf("service %s in namespace %s has no port named %s", quoteShort(name), quoteShort(ns), quoteShort(port))
		}
		return b.unavailable(id, "port not found"), ReasonPortNotFound, what
	}
	if be := b.backends[id]; be != nil {
		return be, "", ""
	}
	be = newBackend(id)
	be.Endpoints = b.endpoints(ns, name, sp.Name)
	b.backends[id] = be
	return be, "", ""
}

// unavailable returns the shared backend for id that answers 503 because
// of why.
func (b *builder) unavailable(id backendID, why string) *route.Backend {
	if be := b.backends[id]; be != nil {
		return be
	}
	be := newBackend(id)
	be.Unavailable = why
	b.backends[id] = be
	return be
}

// newBackend returns a backend without endpoints for id. Its Key is
// "namespace/service:port", with "|balancer" when the Ingress chose a
// policy, "|protocol" when it chose one, and "|name=value" for each other
// setting it changed from the default ("|retries=3", "|read-timeout=2m0s"),
// so that Ingresses with different settings for one Service port get
// backends of their own.
func newBackend(id backendID) *route.Backend {
	key := id.namespace + "/" + id.service + ":" + id.port
	if id.other != "" {
		key = id.namespace + "/" + id.other
	}
	if id.balancer != "" {
		key += "|" + id.balancer
	}
	if id.protocol != "" {
		key += "|" + string(id.protocol)
	}
	set := id.settings
	if set.retries != 0 {
		key += "|retries=" + strconv.Itoa(max(set.retries, 0))
	}
	for _, t := range []struct {
		name string
		d    route.Duration
	}{{"connect-timeout", set.connectTimeout}, {"read-timeout", set.readTimeout}, {"idle-timeout", set.idleTimeout}} {
		if t.d != 0 {
			key += "|" + t.name + "=" + time.Duration(t.d).String()
		}
	}
	if set.maxBodySize != 0 {
		key += "|max-body-size=" + strconv.FormatInt(set.maxBodySize, 10)
	}
	return &route.Backend{
		Key:            key,
		Namespace:      id.namespace,
		Service:        id.service,
		Port:           id.port,
		Balancer:       id.balancer,
		Protocol:       id.protocol,
		Endpoints:      []route.Endpoint{},
		Retries:        set.retries,
		ConnectTimeout: set.connectTimeout,
		ReadTimeout:    set.readTimeout,
		IdleTimeout:    set.idleTimeout,
		MaxBodySize:    set.maxBodySize,
	}
}

// findServicePort finds the Service port an Ingress backend names, by number
// (preferring TCP when a number is there for several protocols) or by name.
func findServicePort(svc *corev1.Service, p networkingv1.ServiceBackendPort) *corev1.ServicePort {
	var found *corev1.ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		switch {
		case p.Number != 0 && sp.Port == p.Number:
			if sp.Protocol == "" || sp.Protocol == corev1.ProtocolTCP {
				return sp
			}
			if found == nil {
				found = sp
			}
		case p.Number == 0 && sp.Name == p.Name:
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
