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

// patchWorld is the random world of TestSyncPatchMatchesSync: ten
// addresses and the backends that routes send to.
type patchWorld struct {
	rng      *rand.Rand
	addrPool []string
	backends []*route.Backend
}

// endpoints picks up to three addresses of the pool at random.
func (w *patchWorld) endpoints() []route.Endpoint {
	var eps []route.Endpoint
	for _, i := range w.rng.Perm(len(w.addrPool))[:w.rng.IntN(4)] {
		eps = append(eps, route.Endpoint{Address: w.addrPool[i]})
	}
	return eps
}

// newPatchWorld makes six backends with random endpoints, each routed to
// from a host of its own, and the table of those routes.
func newPatchWorld() (*patchWorld, *route.Table) {
	w := &patchWorld{rng: rand.New(rand.NewPCG(7, 11)), addrPool: make([]string, 10)}
	for i := range w.addrPool {
		w.addrPool[i] = fmt.Sprintf("127.0.0.%d:80", i+1)
	}
	var hosts []*route.VirtualHost
	for i := range 6 {
		b := &route.Backend{Key: fmt.Sprintf("ns/svc%d:80", i), Namespace: "ns", Service: fmt.Sprintf("svc%d", i), Endpoints: w.endpoints()}
		w.backends = append(w.backends, b)
		hosts = append(hosts, route.NewVirtualHost(fmt.Sprintf("h%d.test", i), []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "a"}},
			{Match: route.Match{PathType: route.PathExact, Path: "/x"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "b"}},
		}))
	}
	return w, route.NewTable(hosts, &route.Route{Backends: route.Single(w.backends[0]), Source: route.Source{Namespace: "ns", Name: "def"}})
}

// replaceSome gives about a third of the backends new random endpoints and
// returns the replacements, the old backend to the new one.
func (w *patchWorld) replaceSome() map[*route.Backend]*route.Backend {
	replace := make(map[*route.Backend]*route.Backend)
	for _, b := range w.backends {
		if w.rng.IntN(3) == 0 {
			nb := *b
			nb.Endpoints = w.endpoints()
			replace[b] = &nb
		}
	}
	for i, b := range w.backends {
		if nb := replace[b]; nb != nil {
			w.backends[i] = nb
		}
	}
	return replace
}

// checkSameAsFull checks, after step, that inc holds the addresses, pools,
// in-flight counters and health that full holds, and that of the pools inc
// held before, those it kept are the same and those it dropped are draining.
func checkSameAsFull(t *testing.T, step int, inc, full *Cluster, before map[string]*Pools) {
	t.Helper()
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
}

// TestSyncPatchMatchesSync checks the incremental path (a table made by
// WithBackends from the one synced) against the full one: after every
// patch in a random sequence, the cluster that took the incremental path
// holds exactly the addresses, pools, in-flight counters and health that
// a cluster syncing the same routes from scratch holds, and the state of
// addresses that stayed is carried over, not recreated.
func TestSyncPatchMatchesSync(t *testing.T) {
	t.Parallel()
	w, table := newPatchWorld()

	health := &balancer.Health{Threshold: 1}
	inc := New(Options{Health: health})
	full := New(Options{})
	inc.Sync(table)
	full.Sync(table)

	patched := 0
	for step := range 200 {
		replace := w.replaceSome()
		before := maps.Clone(*inc.pools.m.Load())
		// An address known before the patch and ejected stays ejected if
		// the patch keeps it.
		ejected := w.addrPool[w.rng.IntN(len(w.addrPool))]
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

		checkSameAsFull(t, step, inc, full, before)
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
