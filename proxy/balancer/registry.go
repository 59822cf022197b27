package balancer

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/postern-dev/postern/proxy/route"
)

// Registry holds one Balancer per backend key and policy, so that a
// balancer's state (the round-robin position) survives table swaps: the
// controller builds new *route.Backend values on every change, but their
// Key stays the same. It also owns the InFlight tracker its LeastRequest
// balancers read, and the Health tracker whose ejected endpoints Pick
// skips.
//
// Like InFlight, lookups never lock: the map is copied on write, in bulk by
// Sync when a table is swapped in.
type Registry struct {
	inflight *InFlight
	health   *Health
	m        atomic.Pointer[map[registryKey]Balancer]
	mu       sync.Mutex // serialises writers of m
}

type registryKey struct {
	key, policy string
}

// NewRegistry returns an empty registry whose balancers count requests in
// inflight and whose picks skip the endpoints health ejected; nil means a
// new tracker of its own, for either.
func NewRegistry(inflight *InFlight, health *Health) *Registry {
	if inflight == nil {
		inflight = new(InFlight)
	}
	if health == nil {
		health = new(Health)
	}
	return &Registry{inflight: inflight, health: health}
}

// Health returns the passive health tracker whose ejected endpoints Pick
// skips; the proxy records the outcome of every attempt in it.
func (r *Registry) Health() *Health { return r.health }

// Pick returns the endpoint of b that a request with hash key key goes to: the pick of b's
// balancer, among the endpoints Health has not ejected. When every
// endpoint is ejected it picks among all of them (fail open): health
// never makes a backend answer 503. Nil means b has no endpoints.
//
// While the balancer's first pick is not ejected, which is always the case
// while no endpoint is, Pick costs what Get and Balancer.Pick cost and does
// not allocate.
func (r *Registry) Pick(b *route.Backend, key uint64) *route.Endpoint {
	bal := r.Get(b)
	ep := bal.Pick(b.Endpoints, key)
	if ep == nil || !r.health.Ejected(ep.Address) {
		return ep
	}
	if alt := r.pickAmong(bal, b.Endpoints, key, nil, false); alt != nil {
		return alt
	}
	return ep // every endpoint is ejected: fail open
}

// PickRetry returns the endpoint of b a retry of a request with hash key
// key goes to: one not in
// tried (the addresses already attempted), not ejected if there is such
// an endpoint, picked by b's balancer. Nil means every endpoint was tried.
// It allocates; it is for the rare request whose attempt failed.
func (r *Registry) PickRetry(b *route.Backend, key uint64, tried []string) *route.Endpoint {
	return r.pickAmong(r.Get(b), b.Endpoints, key, tried, true)
}

// pickAmong picks with bal among the endpoints not in skip that are not
// ejected; when all of those are ejected, among them if failOpen, else
// it returns nil. The result points into endpoints; nil also means every
// endpoint is in skip.
func (r *Registry) pickAmong(bal Balancer, endpoints []route.Endpoint, key uint64, skip []string, failOpen bool) *route.Endpoint {
	untried, healthy := 0, 0
	for i := range endpoints {
		if addr := endpoints[i].Address; !slices.Contains(skip, addr) {
			untried++
			if !r.health.Ejected(addr) {
				healthy++
			}
		}
	}
	n := healthy
	if n == 0 {
		if !failOpen {
			return nil
		}
		n = untried
	}
	if n == 0 {
		return nil
	}
	sub := make([]route.Endpoint, 0, n)
	idx := make([]int, 0, n) // sub[j] is endpoints[idx[j]]
	for i := range endpoints {
		addr := endpoints[i].Address
		if slices.Contains(skip, addr) || (healthy > 0 && r.health.Ejected(addr)) {
			continue
		}
		sub = append(sub, endpoints[i])
		idx = append(idx, i)
	}
	if len(sub) == 0 {
		return nil // every candidate was ejected between the two scans
	}
	ep := bal.Pick(sub, key)
	for j := range sub {
		if &sub[j] == ep {
			return &endpoints[idx[j]]
		}
	}
	return &endpoints[idx[0]] // a balancer breaking its contract
}

// InFlight returns the tracker of requests in flight per endpoint address
// that the registry's balancers read; the proxy counts every request in it.
func (r *Registry) InFlight() *InFlight { return r.inflight }

// Get returns the balancer of b. A backend whose policy is unknown gets a
// round-robin balancer (Sync reports the unknown name once per swap rather
// than on every request). Get does not allocate once b's key is known.
func (r *Registry) Get(b *route.Backend) Balancer {
	k := registryKey{b.Key, b.Balancer}
	if m := r.m.Load(); m != nil {
		if bal := (*m)[k]; bal != nil {
			return bal
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.m.Load()
	if old != nil {
		if bal := (*old)[k]; bal != nil {
			return bal
		}
	}
	m := make(map[registryKey]Balancer, mapLen(old)+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	bal := r.newBalancer(k.policy)
	m[k] = bal
	r.m.Store(&m)
	return bal
}

// Sync prepares the registry for table t before it is swapped in: it keeps
// the balancers of t's backends (matched by key and policy), creates the
// missing ones, forgets the rest, and makes InFlight track exactly t's
// endpoint addresses. It returns an error naming every backend with an
// unknown policy (wrapping ErrUnknownPolicy); those are served round robin.
//
// A request still running on the previous table may bring a forgotten
// backend back through Get; it is forgotten again at the next Sync.
func (r *Registry) Sync(t *route.Table) error {
	backends := t.Backends()
	var errs []error
	var addrs []string
	r.mu.Lock()
	old := r.m.Load()
	m := make(map[registryKey]Balancer, len(backends))
	for _, b := range backends {
		for _, ep := range b.Endpoints {
			addrs = append(addrs, ep.Address)
		}
		k := registryKey{b.Key, b.Balancer}
		if _, ok := m[k]; ok {
			continue
		}
		if _, err := New(k.policy, nil); err != nil {
			errs = append(errs, fmt.Errorf("backend %s: %w", b.Key, err))
		}
		var bal Balancer
		if old != nil {
			bal = (*old)[k]
		}
		if bal == nil {
			bal = r.newBalancer(k.policy)
		}
		m[k] = bal
	}
	r.m.Store(&m)
	r.mu.Unlock()
	r.inflight.Retain(addrs)
	r.health.Retain(addrs)
	return errors.Join(errs...)
}

// SyncPatch prepares the registry for table t, which t.Patch says differs
// from the table of the last Sync or SyncPatch only in the endpoints of
// some backends: added and removed are the endpoint addresses that come
// and go with it. The balancers stay (they are keyed by backend key and
// policy, which a patch keeps); InFlight and Health take the addresses.
// It reports false, changing nothing, when the patch changes a backend's
// key or policy; the caller then uses Sync.
func (r *Registry) SyncPatch(p *route.Patch, added, removed []string) bool {
	for ob, nb := range p.Backends {
		if ob.Key != nb.Key || ob.Balancer != nb.Balancer {
			return false
		}
	}
	r.inflight.Update(added, removed)
	r.health.Update(added, removed)
	return true
}

// Len returns the number of balancers held.
func (r *Registry) Len() int { return mapLen(r.m.Load()) }

// newBalancer builds the balancer for policy, round robin when the name is
// unknown.
func (r *Registry) newBalancer(policy string) Balancer {
	bal, err := New(policy, r.inflight)
	if err != nil {
		return &RoundRobin{}
	}
	return bal
}
