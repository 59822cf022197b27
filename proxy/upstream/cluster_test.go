package upstream

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/route"
)

// TestSyncPatchMatchesSync checks the incremental path (a table made by
// WithBackends from the one synced) against the full one: after every
// patch in a random sequence, the cluster that took the incremental path
// holds exactly the addresses, pools, in-flight counters and health that
// a cluster syncing the same routes from scratch holds, and the state of
// addresses that stayed is carried over, not recreated.
func TestSyncPatchMatchesSync(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	addrPool := make([]string, 10)
	for i := range addrPool {
		addrPool[i] = fmt.Sprintf("127.0.0.%d:80", i+1)
	}
	endpoints := func() []route.Endpoint {
		var eps []route.Endpoint
		for _, i := range rng.Perm(len(addrPool))[:rng.IntN(4)] {
			eps = append(eps, route.Endpoint{Address: addrPool[i]})
		}
		return eps
	}
	var backends []*route.Backend
	var hosts []*route.VirtualHost
	for i := range 6 {
		b := &route.Backend{Key: fmt.Sprintf("ns/svc%d:80", i), Namespace: "ns", Service: fmt.Sprintf("svc%d", i), Endpoints: endpoints()}
		backends = append(backends, b)
		hosts = append(hosts, route.NewVirtualHost(fmt.Sprintf("h%d.test", i), []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "a"}},
			{Match: route.Match{PathType: route.PathExact, Path: "/x"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "b"}},
		}))
	}
	table := route.NewTable(hosts, &route.Route{Backends: route.Single(backends[0]), Source: route.Source{Namespace: "ns", Name: "def"}})

	health := &balancer.Health{Threshold: 1}
	inc := New(Options{Health: health})
	full := New(Options{})
	inc.Sync(table)
	full.Sync(table)

	patched := 0
	for step := range 200 {
		replace := make(map[*route.Backend]*route.Backend)
		for _, b := range backends {
			if rng.IntN(3) == 0 {
				nb := *b
				nb.Endpoints = endpoints()
				replace[b] = &nb
			}
		}
		for i, b := range backends {
			if nb := replace[b]; nb != nil {
				backends[i] = nb
			}
		}
		before := maps.Clone(*inc.pools.m.Load())
		// An address known before the patch and ejected stays ejected if
		// the patch keeps it.
		ejected := addrPool[rng.IntN(len(addrPool))]
		wasEjected := inc.addrRefs[ejected] > 0
		if wasEjected {
			health.Failure(ejected)
		}

		next := table.WithBackends(replace)
		if len(replace) > 0 && next.Patch() == nil {
			t.Fatal("WithBackends made a table without a Patch")
		}
		if len(replace) > 0 {
			patched++
			if !inc.SyncPatch(next.Patch()) {
				t.Fatalf("step %d: SyncPatch refused an endpoint change", step)
			}
		}
		// The same routes, as a table built anew: the full pass.
		full.Sync(route.NewTable(next.VirtualHosts, next.Default))
		table = next

		if !maps.Equal(inc.addrRefs, full.addrRefs) {
			t.Fatalf("step %d: address counts %v, full sync %v", step, inc.addrRefs, full.addrRefs)
		}
		got, want := slices.Sorted(maps.Keys(*inc.pools.m.Load())), slices.Sorted(maps.Keys(*full.pools.m.Load()))
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: pools for %v, full sync %v", step, got, want)
		}
		if inc.inflight.Len() != len(want) || inc.health.Len() != len(want) {
			t.Fatalf("step %d: in-flight knows %d and health %d addresses, want %d", step, inc.inflight.Len(), inc.health.Len(), len(want))
		}
		for a, ep := range before {
			now, kept := (*inc.pools.m.Load())[a]
			switch {
			case kept && now != ep:
				t.Fatalf("step %d: the pools of %s were recreated", step, a)
			case !kept && !ep.removed.Load():
				t.Fatalf("step %d: the pools of dropped %s were not drained", step, a)
			}
		}
		if wasEjected && inc.addrRefs[ejected] > 0 && !health.Ejected(ejected) {
			t.Fatalf("step %d: %s kept its address but lost its ejection", step, ejected)
		}
		health.Success(ejected)
	}
	if patched < 150 {
		t.Fatalf("only %d of 200 steps patched anything", patched)
	}
}

// SyncPatch takes nothing before a first Sync.
func TestSyncPatchBeforeSync(t *testing.T) {
	t.Parallel()
	b := &route.Backend{Key: "ns/a:80", Endpoints: []route.Endpoint{{Address: "127.0.0.1:1"}}}
	base := route.NewTable(nil, &route.Route{Backends: route.Single(b)})
	nb := *b
	nb.Endpoints = []route.Endpoint{{Address: "127.0.0.2:1"}}
	if New(Options{}).SyncPatch(base.WithBackends(map[*route.Backend]*route.Backend{b: &nb}).Patch()) {
		t.Fatal("SyncPatch took a patch before any Sync")
	}
}
