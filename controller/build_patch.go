package controller

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// The incremental path for endpoint changes. In a large cluster most
// changes are EndpointSlices (pods come and go) and a full Build costs
// tens of milliseconds per thousand Ingresses; an endpoint change only
// changes the endpoints of the backends of one Service, and never a
// Problem. PatchEndpoints recomputes just those, with the same code Build
// uses, and the Applier checks that nothing else changed before it takes
// this path.

// PatchEndpoints returns prev, the table Build made from an earlier
// snapshot, with the endpoints of every backend of the Services in changed
// recomputed from snap. It returns what Build(snap) would return, provided
// that snap differs from that earlier snapshot in the EndpointSlices of
// the Services in changed only; the Applier checks that.
func PatchEndpoints(prev *route.Table, snap Snapshot, changed map[types.NamespacedName]bool) *route.Table {
	var services []*corev1.Service
	for _, s := range snap.Services {
		if s != nil && changed[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] {
			services = append(services, s)
		}
	}
	b := &builder{
		services: indexServices(services), // picks among copies as Build does
		slices:   make(map[types.NamespacedName][]*discoveryv1.EndpointSlice, len(changed)),
	}
	for _, s := range snap.EndpointSlices {
		if k, ok := sliceService(s); ok && changed[k] {
			b.slices[k] = append(b.slices[k], s)
		}
	}
	replace := make(map[*route.Backend]*route.Backend)
	for _, be := range backendsOf(prev, changed) {
		k := types.NamespacedName{Namespace: be.Namespace, Name: be.Service}
		svc := b.services[k]
		if svc == nil {
			continue // cannot happen: the Service did not change, and it had one
		}
		sp := findServicePort(svc, backendPort(be.Port))
		if sp == nil {
			continue // likewise
		}
		nb := *be
		nb.Endpoints = b.endpoints(be.Namespace, be.Service, sp.Name)
		replace[be] = &nb
	}
	return prev.WithBackends(replace)
}

// backendsOf returns the distinct backends of t that are ports of a
// Service in services and are not Unavailable.
func backendsOf(t *route.Table, services map[types.NamespacedName]bool) []*route.Backend {
	var out []*route.Backend
	seen := make(map[*route.Backend]bool)
	for _, be := range t.Backends() {
		if be.Unavailable != "" || be.ServiceUpstream || seen[be] ||
			!services[types.NamespacedName{Namespace: be.Namespace, Name: be.Service}] {
			continue
		}
		seen[be] = true
		out = append(out, be)
	}
	return out
}

// backendPort turns Backend.Port back into the port reference it was
// made from: Service port names always hold a letter (IANA_SVC_NAME), so
// digits are a number.
func backendPort(p string) servicePort {
	if n, err := strconv.Atoi(p); err == nil {
		return servicePort{number: int32(n)} //nolint:gosec // Build wrote it from an int32
	}
	return servicePort{name: p}
}

// sliceService returns the Service an EndpointSlice belongs to, by its
// kubernetes.io/service-name label.
func sliceService(s *discoveryv1.EndpointSlice) (types.NamespacedName, bool) {
	if s == nil {
		return types.NamespacedName{}, false
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: s.Namespace, Name: name}, true
}
