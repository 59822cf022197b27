package controller

import (
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// fullBuildEvery bounds how long the Applier patches endpoints into a
// table before it builds the whole table again: Build checks certificates
// against the time (expired, not yet valid), which a patch does not.
const fullBuildEvery = time.Minute

// lastBuild is what the Applier remembers of its last table, so that it can
// tell whether the next snapshot differs in EndpointSlices only. Objects
// are compared by pointer: informers and the manifests source hand out the
// same pointer for an object until it changes, so an unchanged object is
// found in the set, and a changed one (a new pointer) is not.
type lastBuild struct {
	table    *route.Table
	problems []Problem         // what Build reported; a patch never changes them
	gateway  *GatewayAPIStatus // what Build found about the Gateway API objects; nor these
	at       time.Time         // Options.Now of the full build
	objects  map[any]uint64    // every object but the EndpointSlices, with the check that last saw it
	check    uint64            // counts endpointChanges calls, so that a pointer given twice is caught
	counts   [objectKinds]int  // how many of each, in Snapshot order
	slices   map[*discoveryv1.EndpointSlice]sliceEntry
	routes   int // the table's routes and backends, for the log line
	backends int
}

// remember records the snapshot a full build was made from.
func remember(s Snapshot, table *route.Table, problems []Problem, at time.Time) *lastBuild {
	counts := objectCounts(s)
	l := &lastBuild{
		table:    table,
		problems: problems,
		at:       at,
		objects:  make(map[any]uint64, total(counts)),
		counts:   counts,
		slices:   make(map[*discoveryv1.EndpointSlice]sliceEntry, len(s.EndpointSlices)),
	}
	rememberObjects(l, s.Ingresses)
	rememberObjects(l, s.IngressClasses)
	rememberObjects(l, s.Services)
	rememberObjects(l, s.Secrets)
	rememberObjects(l, s.ConfigMaps)
	rememberObjects(l, s.Namespaces)
	rememberObjects(l, s.GatewayClasses)
	rememberObjects(l, s.Gateways)
	rememberObjects(l, s.HTTPRoutes)
	rememberObjects(l, s.GRPCRoutes)
	rememberObjects(l, s.BackendTLSPolicies)
	rememberObjects(l, s.ReferenceGrants)
	for _, o := range s.EndpointSlices {
		if k, ok := sliceService(o); ok {
			l.slices[o] = sliceEntry{service: k}
		}
	}
	return l
}

// objectKinds is how many kinds of objects a Snapshot holds besides
// EndpointSlices.
const objectKinds = 12

// objectCounts returns how many objects of each kind but EndpointSlices
// s holds, in Snapshot order.
func objectCounts(s Snapshot) [objectKinds]int {
	return [objectKinds]int{len(s.Ingresses), len(s.IngressClasses), len(s.Services), len(s.Secrets), len(s.ConfigMaps),
		len(s.Namespaces), len(s.GatewayClasses), len(s.Gateways), len(s.HTTPRoutes), len(s.GRPCRoutes), len(s.ReferenceGrants), len(s.BackendTLSPolicies)}
}

// total returns the sum of counts.
func total(counts [objectKinds]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// rememberObjects adds the objects of list to l, each not yet seen.
func rememberObjects[T any](l *lastBuild, list []*T) {
	for _, o := range list {
		l.objects[o] = 0
	}
}

// sliceEntry is what lastBuild knows of an EndpointSlice: its Service, and
// the check that last saw it.
type sliceEntry struct {
	service types.NamespacedName
	check   uint64
}

// endpointChanges reports the Services whose EndpointSlices differ between
// the remembered snapshot and s, and ok false when anything other than
// EndpointSlices differs (or a full build is due at now): then only Build
// gives the right table. When ok, it has also made s the remembered
// snapshot's slices, for the next call.
func (l *lastBuild) endpointChanges(s Snapshot, now time.Time) (changed map[types.NamespacedName]bool, ok bool) {
	if l == nil || now.Sub(l.at) >= fullBuildEvery || now.Before(l.at) {
		return nil, false
	}
	if l.counts != objectCounts(s) {
		return nil, false
	}
	if len(l.objects) != total(l.counts) {
		return nil, false // the remembered snapshot held a pointer twice
	}
	// Same counts, every object known and none seen twice in this check:
	// the same objects.
	l.check++
	if !sameObjects(l, s.Ingresses) || !sameObjects(l, s.IngressClasses) || !sameObjects(l, s.Services) || !sameObjects(l, s.Secrets) ||
		!sameObjects(l, s.ConfigMaps) || !sameObjects(l, s.Namespaces) || !sameObjects(l, s.GatewayClasses) || !sameObjects(l, s.Gateways) ||
		!sameObjects(l, s.HTTPRoutes) || !sameObjects(l, s.GRPCRoutes) || !sameObjects(l, s.ReferenceGrants) || !sameObjects(l, s.BackendTLSPolicies) {
		return nil, false
	}
	// A slice not remembered is new or changed; a remembered one not seen
	// again was deleted or changed. Either way its Service changed.
	changed = make(map[types.NamespacedName]bool)
	seen := 0
	var added []*discoveryv1.EndpointSlice
	for _, o := range s.EndpointSlices {
		k, named := sliceService(o)
		if !named {
			continue
		}
		e, known := l.slices[o]
		switch {
		case !known:
			changed[k] = true
			added = append(added, o)
		case e.check != l.check:
			e.check = l.check
			l.slices[o] = e
			seen++
		}
	}
	if seen != len(l.slices) {
		for o, e := range l.slices {
			if e.check != l.check {
				changed[e.service] = true
				delete(l.slices, o)
			}
		}
	}
	for _, o := range added {
		k, _ := sliceService(o)
		l.slices[o] = sliceEntry{service: k, check: l.check}
	}
	return changed, true
}

// sameObjects reports whether every object of list is remembered and not
// seen before in this check, and marks them seen.
func sameObjects[T any](l *lastBuild, list []*T) bool {
	for _, o := range list {
		seen, known := l.objects[o]
		if !known || seen == l.check {
			return false
		}
		l.objects[o] = l.check
	}
	return true
}
