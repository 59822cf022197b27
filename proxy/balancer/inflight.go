package balancer

import (
	"maps"
	"sync"
	"sync/atomic"
)

// InFlight counts the requests in flight to each endpoint, keyed by endpoint
// address. It is the state of LeastRequest that must outlive a table swap:
// a request that started on the old table still counts against its
// endpoint on the new one. Its zero value is ready to use.
//
// Reads never lock: the counters sit in a map that is replaced, never
// modified, when an address is added or removed (copy on write). Addresses
// are added in bulk by Retain when a table is swapped in, so the request path
// only looks counters up; an address met for the first time on the request
// path is added under a mutex, once.
type InFlight struct {
	counters atomic.Pointer[map[string]*Counter]
	mu       sync.Mutex // serialises writers of counters
}

// Counter is the number of requests in flight to one endpoint, and the
// moving average of its latency that EWMA reads (ewma.go).
type Counter struct {
	n     atomic.Int64
	ewma  atomic.Uint64 // float64 bits, nanoseconds
	stamp atomic.Int64  // Unix nanoseconds of the last observation
}

// Release ends one request counted by InFlight.Acquire.
func (c *Counter) Release() { c.n.Add(-1) }

// Load returns the number of requests in flight.
func (c *Counter) Load() int64 { return c.n.Load() }

// Acquire counts one more request in flight to addr and returns its counter;
// call Release on it, exactly once, when the request ends. The counter stays
// valid after a table swap forgets addr. Acquire does not allocate once addr
// is known.
func (f *InFlight) Acquire(addr string) *Counter {
	c := f.counter(addr)
	c.n.Add(1)
	return c
}

// Count returns the number of requests in flight to addr; 0 for an address
// that is not known. A nil *InFlight counts nothing.
func (f *InFlight) Count(addr string) int64 {
	if f == nil {
		return 0
	}
	if m := f.counters.Load(); m != nil {
		if c := (*m)[addr]; c != nil {
			return c.n.Load()
		}
	}
	return 0
}

func (f *InFlight) counter(addr string) *Counter {
	if m := f.counters.Load(); m != nil {
		if c := (*m)[addr]; c != nil {
			return c
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.counters.Load()
	if old != nil {
		if c := (*old)[addr]; c != nil {
			return c
		}
	}
	m := make(map[string]*Counter, mapLen(old)+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	c := new(Counter)
	m[addr] = c
	f.counters.Store(&m)
	return c
}

// Retain makes the set of known addresses exactly addrs: addresses not in
// it are forgotten and new ones get a counter, in one copy of the map. The
// proxy calls it with every endpoint address of a table being swapped in.
// Requests in flight to a forgotten address keep their Counter and release
// it normally; if the address comes back later it starts from zero.
func (f *InFlight) Retain(addrs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.counters.Load()
	m := make(map[string]*Counter, len(addrs))
	for _, a := range addrs {
		if _, ok := m[a]; ok {
			continue
		}
		var c *Counter
		if old != nil {
			c = (*old)[a]
		}
		if c == nil {
			c = new(Counter)
		}
		m[a] = c
	}
	f.counters.Store(&m)
}

// Update adds the addresses of added and forgets those of removed, as
// Retain would for a table that differs from the last one by just those;
// its cost grows with the size of the map once (one copy), not with the
// endpoints of every backend. The proxy calls it for an endpoint change.
func (f *InFlight) Update(added, removed []string) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := updated(f.counters.Load(), added, removed, func() *Counter { return new(Counter) }, nil)
	f.counters.Store(&m)
}

// updated returns a copy of *m (nil: empty) without the addresses of
// removed, each passed to drop first when drop is set, and with those of
// added, made by mk when missing. The copy is maps.Clone's, which copies
// the map's memory as it is without hashing every key again: about five
// times faster than inserting each entry into a new map, which is what
// makes an endpoint change cheap in a table of 50,000 endpoints.
func updated[V any](m *map[string]V, added, removed []string, mk func() V, drop func(V)) map[string]V {
	c := map[string]V{}
	if m != nil {
		c = maps.Clone(*m)
	}
	for _, a := range removed {
		if v, ok := c[a]; ok {
			if drop != nil {
				drop(v)
			}
			delete(c, a)
		}
	}
	for _, a := range added {
		if _, ok := c[a]; !ok {
			c[a] = mk()
		}
	}
	return c
}

// Len returns the number of addresses known.
func (f *InFlight) Len() int { return mapLen(f.counters.Load()) }

func mapLen[K comparable, V any](m *map[K]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
