package balancer

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/postern-dev/postern/proxy/route"
)

// Registry holds one Balancer per backend key and policy, so that a
// balancer's state (the round-robin position) survives table swaps: the
// controller builds new *route.Backend values on every change, but their
// Key stays the same. It also owns the InFlight tracker its LeastRequest
// balancers read.
//
// Like InFlight, lookups never lock: the map is copied on write, in bulk by
// Sync when a table is swapped in.
type Registry struct {
	inflight *InFlight
	m        atomic.Pointer[map[registryKey]Balancer]
	mu       sync.Mutex // serialises writers of m
}

type registryKey struct {
	key, policy string
}

// NewRegistry returns an empty registry whose balancers count requests in
// inflight; nil means a new tracker of its own.
func NewRegistry(inflight *InFlight) *Registry {
	if inflight == nil {
		inflight = new(InFlight)
	}
	return &Registry{inflight: inflight}
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
	return errors.Join(errs...)
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
