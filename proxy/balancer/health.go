package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Health.
const (
	// DefaultFailureThreshold is how many consecutive failures eject an
	// endpoint.
	DefaultFailureThreshold = 3
	// DefaultEjection is how long an endpoint is ejected the first time.
	DefaultEjection = 5 * time.Second
	// DefaultMaxEjection caps the ejection period, which doubles with
	// every ejection that follows another without a success in between.
	DefaultMaxEjection = 2 * time.Minute
)

// Health is passive health checking: it learns from the outcome of real
// requests which endpoints fail, keyed by endpoint address, and ejects an
// endpoint after Threshold consecutive failures. An ejected endpoint is
// skipped by Registry.Pick until its ejection period ends, then it gets
// traffic again by itself; failing again right away (Threshold more
// failures, no success in between) ejects it for twice as long, up to
// MaxEjection. A success forgets its history. Like Envoy's outlier
// detection, and unlike an active health check, it costs no probes.
//
// Ejection never makes a backend unavailable: when every endpoint of a
// backend is ejected, Registry.Pick still picks among them (fail open),
// since a guess that all of them are broken is worse than trying.
//
// The configuration fields are read when an endpoint fails; set them
// before the Health is used. The zero value is ready to use with the
// defaults. The request path costs one atomic load while no endpoint has
// failed lately, and a map lookup after that; it never locks or allocates.
type Health struct {
	// Threshold is how many consecutive failures eject an endpoint. Zero
	// means DefaultFailureThreshold.
	Threshold int
	// Ejection is how long an endpoint is ejected the first time. Zero
	// means DefaultEjection.
	Ejection time.Duration
	// MaxEjection caps the ejection period. Zero means DefaultMaxEjection.
	MaxEjection time.Duration
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time

	states atomic.Pointer[map[string]*endpointHealth]
	mu     sync.Mutex // serialises writers of states

	// troubled counts the known endpoints with a failure history;
	// while it is zero a success has nothing to forget.
	troubled atomic.Int64
	// ejected counts the known endpoints marked ejected (some perhaps
	// expired but not yet noticed); while it is zero nothing is skipped.
	ejected atomic.Int64
}

// endpointHealth is the state of one address. Its mutex serialises
// changes; Ejected reads until without it.
type endpointHealth struct {
	mu        sync.Mutex
	until     atomic.Int64 // when the ejection ends, in Unix nanoseconds; 0: not ejected
	failures  int          // consecutive failures since the last ejection or success
	ejections int          // ejections since the last success
	troubled  bool         // counted in Health.troubled
	counted   bool         // counted in Health.ejected
	forgotten bool         // dropped by Retain: counted in nothing any more
}

// Ejected reports whether addr is ejected now. An ejection that has ended
// is cleared here. A nil *Health ejects nothing.
func (h *Health) Ejected(addr string) bool {
	if h == nil || h.ejected.Load() == 0 {
		return false
	}
	e := h.lookup(addr)
	if e == nil {
		return false
	}
	until := e.until.Load()
	if until == 0 {
		return false
	}
	if h.now().UnixNano() < until {
		return true
	}
	// The period is over: the endpoint comes back. Its ejection count
	// stays, so that failing again right away ejects it for longer.
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.until.Load() == until {
		e.until.Store(0)
		h.uncountEjected(e)
	}
	return false
}

// Failure records a failed attempt to reach addr. It returns how long addr
// is now ejected for when this failure ejected it, and zero otherwise.
func (h *Health) Failure(addr string) time.Duration {
	if h == nil {
		return 0
	}
	e := h.state(addr)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.until.Load() != 0 && h.now().UnixNano() < e.until.Load() {
		// Already ejected: requests picked it before the ejection, or
		// every endpoint is ejected and traffic fails open. Its period
		// is not stretched by those.
		return 0
	}
	e.failures++
	h.setTroubled(e, true)
	if e.failures < h.threshold() {
		return 0
	}
	d := h.period(e.ejections)
	e.failures = 0
	e.ejections++
	if !e.forgotten && !e.counted {
		e.counted = true
		h.ejected.Add(1)
	}
	e.until.Store(h.now().Add(d).UnixNano())
	return d
}

// Success records an attempt to reach addr that got a response: it
// forgets addr's failures and ejections.
func (h *Health) Success(addr string) {
	if h == nil || h.troubled.Load() == 0 {
		return
	}
	e := h.lookup(addr)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.troubled {
		return
	}
	e.failures, e.ejections = 0, 0
	if e.until.Load() != 0 {
		e.until.Store(0)
		h.uncountEjected(e)
	}
	h.setTroubled(e, false)
}

// Retain makes the set of known addresses exactly addrs, keeping the
// state of those already known; the proxy calls it with every endpoint
// address of a table being swapped in. A forgotten address that comes
// back later starts with a clean history.
func (h *Health) Retain(addrs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.states.Load()
	m := make(map[string]*endpointHealth, len(addrs))
	for _, a := range addrs {
		if _, ok := m[a]; ok {
			continue
		}
		var e *endpointHealth
		if old != nil {
			e = (*old)[a]
		}
		if e == nil {
			e = new(endpointHealth)
		}
		m[a] = e
	}
	if old != nil {
		for a, e := range *old {
			if _, kept := m[a]; !kept {
				h.forget(e)
			}
		}
	}
	h.states.Store(&m)
}

// Update adds the addresses of added and forgets those of removed (see
// InFlight.Update): Retain for a table that differs from the last one by
// just those.
func (h *Health) Update(added, removed []string) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := updated(h.states.Load(), added, removed, func() *endpointHealth { return new(endpointHealth) }, h.forget)
	h.states.Store(&m)
}

// Len returns the number of addresses known.
func (h *Health) Len() int { return mapLen(h.states.Load()) }

// forget stops counting e, which Retain dropped; requests still holding
// it may record outcomes in it, to no effect on the counts.
func (h *Health) forget(e *endpointHealth) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h.setTroubled(e, false)
	h.uncountEjected(e)
	e.forgotten = true
}

func (h *Health) setTroubled(e *endpointHealth, v bool) {
	if e.forgotten || e.troubled == v {
		return
	}
	e.troubled = v
	if v {
		h.troubled.Add(1)
	} else {
		h.troubled.Add(-1)
	}
}

func (h *Health) uncountEjected(e *endpointHealth) {
	if e.counted {
		e.counted = false
		h.ejected.Add(-1)
	}
}

func (h *Health) lookup(addr string) *endpointHealth {
	if m := h.states.Load(); m != nil {
		return (*m)[addr]
	}
	return nil
}

// state returns the state of addr, adding addr when it is not known (a
// request that started on a table no longer served).
func (h *Health) state(addr string) *endpointHealth {
	if e := h.lookup(addr); e != nil {
		return e
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.states.Load()
	if old != nil {
		if e := (*old)[addr]; e != nil {
			return e
		}
	}
	m := make(map[string]*endpointHealth, mapLen(old)+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	e := new(endpointHealth)
	m[addr] = e
	h.states.Store(&m)
	return e
}

// period is the length of an ejection that follows n others without a
// success in between.
func (h *Health) period(n int) time.Duration {
	d, limit := h.Ejection, h.MaxEjection
	if d <= 0 {
		d = DefaultEjection
	}
	if limit <= 0 {
		limit = DefaultMaxEjection
	}
	for ; n > 0 && d < limit; n-- {
		d *= 2
	}
	return min(d, limit)
}

func (h *Health) threshold() int {
	if h.Threshold <= 0 {
		return DefaultFailureThreshold
	}
	return h.Threshold
}

func (h *Health) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
