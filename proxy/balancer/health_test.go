package balancer

import (
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// clock is a settable time for Health.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestHealthEjectsAfterThresholdAndComesBack(t *testing.T) {
	t.Parallel()
	c := newClock()
	h := &Health{Threshold: 3, Ejection: time.Second, MaxEjection: 5 * time.Second, Now: c.Now}
	const a = "10.0.0.1:80"
	h.Retain([]string{a, "10.0.0.2:80"})

	// Each ejection follows the previous one without a success in
	// between: 1s, 2s, 4s, then the cap.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		for f := 1; f < 3; f++ {
			if d := h.Failure(a); d != 0 || h.Ejected(a) {
				t.Fatalf("round %d: failure %d ejected %s for %s; want 3 failures first", i, f, a, d)
			}
		}
		if d := h.Failure(a); d != want {
			t.Fatalf("round %d: third failure ejected for %s, want %s", i, d, want)
		}
		if !h.Ejected(a) || h.Ejected("10.0.0.2:80") {
			t.Fatalf("round %d: Ejected(a) = %v, Ejected(other) = %v; want true, false", i, h.Ejected(a), h.Ejected("10.0.0.2:80"))
		}
		// Failures of requests that picked it before the ejection do not
		// stretch the period.
		if d := h.Failure(a); d != 0 {
			t.Fatalf("round %d: a failure while ejected ejected again for %s", i, d)
		}
		c.Advance(want - time.Nanosecond)
		if !h.Ejected(a) {
			t.Fatalf("round %d: back before the period (%s) ended", i, want)
		}
		c.Advance(time.Nanosecond)
		if h.Ejected(a) {
			t.Fatalf("round %d: still ejected after %s", i, want)
		}
	}

	// A success forgets everything: the next ejection is the first again.
	h.Success(a)
	if h.troubled.Load() != 0 || h.ejected.Load() != 0 {
		t.Errorf("after a success: troubled %d, ejected %d; want 0, 0", h.troubled.Load(), h.ejected.Load())
	}
	h.Failure(a)
	h.Failure(a)
	if d := h.Failure(a); d != time.Second {
		t.Errorf("ejection after a success lasts %s, want 1s", d)
	}
}

func TestHealthSuccessResetsConsecutiveCount(t *testing.T) {
	t.Parallel()
	h := &Health{}
	const a = "10.0.0.1:80"
	h.Retain([]string{a})
	for range 10 {
		h.Failure(a)
		h.Failure(a)
		h.Success(a)
	}
	if h.Ejected(a) {
		t.Fatal("ejected without 3 consecutive failures")
	}
	h.Failure(a)
	h.Failure(a)
	if d := h.Failure(a); d != DefaultEjection || !h.Ejected(a) {
		t.Errorf("3 consecutive failures: ejected for %s (Ejected %v), want %s", d, h.Ejected(a), DefaultEjection)
	}
}

func TestHealthRetainForgets(t *testing.T) {
	t.Parallel()
	h := &Health{Threshold: 1}
	h.Retain([]string{"a:1", "b:1"})
	h.Failure("a:1")
	h.Failure("b:1")
	if !h.Ejected("a:1") || !h.Ejected("b:1") || h.ejected.Load() != 2 || h.troubled.Load() != 2 {
		t.Fatalf("both should be ejected: ejected %d, troubled %d", h.ejected.Load(), h.troubled.Load())
	}
	h.Retain([]string{"b:1", "c:1"})
	if h.Len() != 2 || h.ejected.Load() != 1 || h.troubled.Load() != 1 {
		t.Errorf("after Retain: len %d, ejected %d, troubled %d; want 2, 1, 1", h.Len(), h.ejected.Load(), h.troubled.Load())
	}
	if h.Ejected("a:1") || !h.Ejected("b:1") {
		t.Errorf("Ejected(a) = %v, Ejected(b) = %v; want false (forgotten), true (kept)", h.Ejected("a:1"), h.Ejected("b:1"))
	}
	// An address met on the request path only (a request of an older
	// table) is tracked until the next Retain.
	h.Failure("z:1")
	if !h.Ejected("z:1") {
		t.Error("an unknown address that failed is not ejected")
	}
	h.Retain(nil)
	if h.Len() != 0 || h.ejected.Load() != 0 || h.troubled.Load() != 0 {
		t.Errorf("after Retain(nil): len %d, ejected %d, troubled %d", h.Len(), h.ejected.Load(), h.troubled.Load())
	}
	var nilHealth *Health
	if nilHealth.Ejected("a:1") || nilHealth.Failure("a:1") != 0 {
		t.Error("a nil Health ejects")
	}
	nilHealth.Success("a:1")
}

func TestRegistryPickSkipsEjected(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{PolicyRoundRobin, PolicyLeastRequest} {
		c := newClock()
		h := &Health{Threshold: 1, Ejection: time.Second, Now: c.Now}
		r := NewRegistry(nil, h)
		b := backend("ns/web:80|"+policy, policy, 4)
		if err := r.Sync(table(b)); err != nil {
			t.Fatal(err)
		}
		h.Failure(b.Endpoints[1].Address)
		h.Failure(b.Endpoints[2].Address)
		got := make(map[string]int)
		for range 400 {
			ep := r.Pick(b, 0)
			if ep != &b.Endpoints[0] && ep != &b.Endpoints[3] {
				t.Fatalf("%s: Pick = %v, want a pointer to endpoint 0 or 3", policy, ep)
			}
			got[ep.Address]++
		}
		if got[b.Endpoints[0].Address] < 100 || got[b.Endpoints[3].Address] < 100 {
			t.Errorf("%s: picks %v, want both healthy endpoints used", policy, got)
		}

		// All ejected: still picked (fail open), never nil.
		h.Failure(b.Endpoints[0].Address)
		h.Failure(b.Endpoints[3].Address)
		got = make(map[string]int)
		for range 400 {
			ep := r.Pick(b, 0)
			if ep == nil {
				t.Fatalf("%s: Pick = nil with every endpoint ejected, want fail open", policy)
			}
			got[ep.Address]++
		}
		if len(got) != 4 {
			t.Errorf("%s: fail-open picks %v, want all 4 endpoints", policy, got)
		}

		// The period ends: every endpoint is back.
		c.Advance(time.Second)
		for _, ep := range b.Endpoints {
			if h.Ejected(ep.Address) {
				t.Errorf("%s: %s still ejected after the period", policy, ep.Address)
			}
		}
	}
}

func TestRegistryPickRetry(t *testing.T) {
	t.Parallel()
	h := &Health{Threshold: 1}
	r := NewRegistry(nil, h)
	b := backend("ns/web:80", "", 3)
	if err := r.Sync(table(b)); err != nil {
		t.Fatal(err)
	}
	a0, a1, a2 := b.Endpoints[0].Address, b.Endpoints[1].Address, b.Endpoints[2].Address
	for range 10 {
		if ep := r.PickRetry(b, 0, []string{a0, a1}); ep != &b.Endpoints[2] {
			t.Fatalf("PickRetry without 0 and 1 = %v, want endpoint 2", ep)
		}
	}
	if ep := r.PickRetry(b, 0, []string{a0, a1, a2}); ep != nil {
		t.Errorf("PickRetry with every endpoint tried = %v, want nil", ep)
	}
	// Healthy endpoints first; an ejected one only when nothing else is
	// left (fail open).
	h.Failure(a1)
	for range 10 {
		if ep := r.PickRetry(b, 0, []string{a0}); ep != &b.Endpoints[2] {
			t.Fatalf("PickRetry = %v, want the healthy endpoint 2", ep)
		}
	}
	if ep := r.PickRetry(b, 0, []string{a0, a2}); ep != &b.Endpoints[1] {
		t.Errorf("PickRetry = %v, want the ejected endpoint 1, the only one left", ep)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	h := &Health{}
	r := NewRegistry(nil, h)
	rr := backend("ns/a:80", "", 3)
	lr := backend("ns/b:80", PolicyLeastRequest, 3)
	other := backend("ns/c:80", "", 2)
	if err := r.Sync(table(rr, lr, other)); err != nil {
		t.Fatal(err)
	}
	pick := func() {
		for _, b := range []*route.Backend{rr, lr} {
			ep := r.Pick(b, 0)
			r.InFlight().Acquire(ep.Address).Release()
			h.Success(ep.Address)
		}
	}
	if allocs := testing.AllocsPerRun(1000, pick); allocs != 0 {
		t.Errorf("Pick+Acquire+Release+Success allocates %.1f times, want 0", allocs)
	}
	// An endpoint of another backend is ejected: the checks now look
	// addresses up, still without allocating.
	for range DefaultFailureThreshold {
		h.Failure(other.Endpoints[0].Address)
	}
	if !h.Ejected(other.Endpoints[0].Address) {
		t.Fatal("not ejected")
	}
	if allocs := testing.AllocsPerRun(1000, pick); allocs != 0 {
		t.Errorf("with an ejected endpoint elsewhere, Pick and co allocate %.1f times, want 0", allocs)
	}
}

// TestHealthConcurrentUse is for the race detector.
func TestHealthConcurrentUse(t *testing.T) {
	t.Parallel()
	c := newClock()
	h := &Health{Threshold: 2, Ejection: time.Millisecond, Now: c.Now}
	r := NewRegistry(nil, h)
	tables := []*route.Table{table(backend("ns/a:80", "", 4)), table(backend("ns/a:80", "", 3))}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				b := tables[(g+i)%2].Backends()[0]
				ep := r.Pick(b, 0)
				switch i % 3 {
				case 0:
					h.Success(ep.Address)
				default:
					h.Failure(ep.Address)
				}
				if i%100 == 0 {
					c.Advance(time.Millisecond)
					_ = r.Sync(tables[i%2])
				}
			}
		})
	}
	wg.Wait()
	_ = r.Sync(tables[0])
	for _, ep := range tables[0].Backends()[0].Endpoints {
		h.Success(ep.Address)
	}
	if h.troubled.Load() != 0 || h.ejected.Load() != 0 {
		t.Errorf("after successes everywhere: troubled %d, ejected %d; want 0, 0", h.troubled.Load(), h.ejected.Load())
	}
}
