package balancer

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

func endpoints(n int) []route.Endpoint {
	eps := make([]route.Endpoint, n)
	for i := range eps {
		eps[i].Address = fmt.Sprintf("10.0.0.%d:8080", i+1)
	}
	return eps
}

// counts picks n times from eps and returns how often each address came out.
func counts(b Balancer, eps []route.Endpoint, n int) map[string]int {
	got := make(map[string]int)
	for range n {
		ep := b.Pick(eps, 0)
		if ep == nil {
			panic("Pick returned nil for a non-empty list")
		}
		got[ep.Address]++
	}
	return got
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		want    string
		wantErr bool
	}{
		{"", "*balancer.RoundRobin", false},
		{PolicyRoundRobin, "*balancer.RoundRobin", false},
		{PolicyLeastRequest, "*balancer.LeastRequest", false},
		{"Round-Robin", "", true},
		{"random", "", true},
		{"least_request", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(tt.name, new(InFlight))
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownPolicy) || b != nil {
					t.Fatalf("New(%q) = %v, %v; want nil, ErrUnknownPolicy", tt.name, b, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.name, err)
			}
			if got := fmt.Sprintf("%T", b); got != tt.want {
				t.Errorf("New(%q) = %s, want %s", tt.name, got, tt.want)
			}
		})
	}
}

func TestEmptyListPicksNothing(t *testing.T) {
	t.Parallel()
	for _, name := range []string{PolicyRoundRobin, PolicyLeastRequest} {
		b, _ := New(name, new(InFlight))
		for _, eps := range [][]route.Endpoint{nil, {}} {
			if ep := b.Pick(eps, 0); ep != nil {
				t.Errorf("%s: Pick(%v) = %v, want nil", name, eps, ep)
			}
		}
	}
}

func TestSingleEndpoint(t *testing.T) {
	t.Parallel()
	eps := endpoints(1)
	for _, name := range []string{PolicyRoundRobin, PolicyLeastRequest} {
		b, _ := New(name, new(InFlight))
		for range 10 {
			if ep := b.Pick(eps, 0); ep != &eps[0] {
				t.Fatalf("%s: Pick = %v, want the only endpoint", name, ep)
			}
		}
	}
}

func TestRoundRobinIsExactlyEven(t *testing.T) {
	t.Parallel()
	var rr RoundRobin
	eps := endpoints(3)
	got := counts(&rr, eps, 3000)
	for _, ep := range eps {
		if got[ep.Address] != 1000 {
			t.Errorf("%s picked %d times of 3000, want exactly 1000 (all: %v)", ep.Address, got[ep.Address], got)
		}
	}

	// The list changes mid-way (a table swap added an endpoint): picks
	// continue through the new list, still exactly even.
	_ = rr.Pick(eps, 0)
	eps4 := endpoints(4)
	got = counts(&rr, eps4, 400)
	for _, ep := range eps4 {
		if got[ep.Address] != 100 {
			t.Errorf("after the change %s picked %d times of 400, want exactly 100 (all: %v)", ep.Address, got[ep.Address], got)
		}
	}
}

func TestRoundRobinConcurrentIsExactlyEven(t *testing.T) {
	t.Parallel()
	var rr RoundRobin
	eps := endpoints(4)
	var mu sync.Mutex
	total := make(map[string]int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got := counts(&rr, eps, 1000)
			mu.Lock()
			defer mu.Unlock()
			for k, v := range got {
				total[k] += v
			}
		})
	}
	wg.Wait()
	for _, ep := range eps {
		if total[ep.Address] != 2000 {
			t.Errorf("%s picked %d times of 8000, want exactly 2000 (all: %v)", ep.Address, total[ep.Address], total)
		}
	}
}

// hold puts n requests in flight to addr and returns their counters.
func hold(f *InFlight, addr string, n int) []*Counter {
	var cs []*Counter
	for range n {
		cs = append(cs, f.Acquire(addr))
	}
	return cs
}

func TestLeastRequestOfTwoAlwaysPicksTheIdleOne(t *testing.T) {
	t.Parallel()
	f := new(InFlight)
	lr := &LeastRequest{InFlight: f}
	eps := endpoints(2)
	hold(f, eps[0].Address, 1)
	got := counts(lr, eps, 1000)
	if got[eps[1].Address] != 1000 {
		t.Errorf("picks = %v, want all 1000 on the idle %s", got, eps[1].Address)
	}
}

func TestLeastRequestNeverPicksTheBusiest(t *testing.T) {
	t.Parallel()
	f := new(InFlight)
	lr := &LeastRequest{InFlight: f}
	eps := endpoints(5)
	for i, n := range []int{0, 1, 2, 3, 9} {
		hold(f, eps[i].Address, n)
	}
	got := counts(lr, eps, 10000)
	if n := got[eps[4].Address]; n != 0 {
		t.Errorf("the busiest endpoint was picked %d times, want 0 (picks: %v)", n, got)
	}
	// The idle endpoint wins every comparison it is in: 2/5 of picks in
	// expectation, and certainly more than a fair 1/5 share.
	if n := got[eps[0].Address]; n <= got[eps[1].Address] || n <= 2000 {
		t.Errorf("the idle endpoint was picked %d times, want the most and over 2000 (picks: %v)", n, got)
	}
}

// share checks that got/total is within tol of want. The bounds used below
// are more than 14 standard deviations wide: a failure means a bias, not
// bad luck (the chance of a false alarm is below 1e-40).
func share(t *testing.T, what string, got, total int, want, tol float64) {
	t.Helper()
	s := float64(got) / float64(total)
	if math.Abs(s-want) > tol {
		t.Errorf("%s: share %.4f (%d/%d), want %.2f ± %.2f", what, s, got, total, want, tol)
	}
}

func TestLeastRequestPrefersIdleEndpoints(t *testing.T) {
	t.Parallel()
	f := new(InFlight)
	lr := &LeastRequest{InFlight: f}
	eps := endpoints(10)
	for _, ep := range eps[1:] {
		hold(f, ep.Address, 5)
	}
	const n = 100000
	got := counts(lr, eps, n)
	// The idle endpoint is picked whenever it is one of the two choices:
	// 1 - (9/10)(8/9) = 0.2, twice its fair share. σ ≈ 0.0013.
	share(t, "idle endpoint", got[eps[0].Address], n, 0.2, 0.02)
	for _, ep := range eps[1:] {
		// The busy ones split the rest evenly: 0.8/9 each, σ ≈ 0.0009.
		share(t, ep.Address, got[ep.Address], n, 0.8/9, 0.015)
	}
}

func TestLeastRequestBreaksTiesAtRandom(t *testing.T) {
	t.Parallel()
	for _, f := range []*InFlight{new(InFlight), nil} {
		lr := &LeastRequest{InFlight: f}
		eps := endpoints(4)
		const n = 100000
		got := counts(lr, eps, n)
		for _, ep := range eps {
			share(t, ep.Address, got[ep.Address], n, 0.25, 0.02) // σ ≈ 0.0014
		}
		// Two endpoints only, always tied: both choices are made every
		// time, the tie-break alone decides.
		got = counts(lr, eps[:2], n)
		share(t, "tie of two", got[eps[0].Address], n, 0.5, 0.03) // σ ≈ 0.0016
	}
}

func TestInFlight(t *testing.T) {
	t.Parallel()
	var f InFlight
	if f.Count("a:1") != 0 || f.Len() != 0 {
		t.Fatal("zero InFlight is not empty")
	}
	c1 := f.Acquire("a:1")
	c2 := f.Acquire("a:1")
	f.Acquire("b:1")
	if got := f.Count("a:1"); got != 2 {
		t.Errorf("Count(a:1) = %d, want 2", got)
	}
	c1.Release()
	if got := c2.Load(); got != 1 {
		t.Errorf("after one release Count(a:1) = %d, want 1", got)
	}

	// A swap keeps a:1 and c:1, forgets b:1.
	f.Retain([]string{"a:1", "c:1", "a:1"})
	if f.Len() != 2 || f.Count("b:1") != 0 || f.Count("a:1") != 1 || f.Count("c:1") != 0 {
		t.Errorf("after Retain: len %d, a %d, b %d, c %d; want 2, 1, 0, 0", f.Len(), f.Count("a:1"), f.Count("b:1"), f.Count("c:1"))
	}
	if f.Acquire("a:1") != c2 {
		t.Error("Retain replaced the counter of a kept address")
	}
	// The request that held a:1 before the swap releases the same counter.
	c2.Release()
	if got := f.Count("a:1"); got != 1 {
		t.Errorf("Count(a:1) = %d, want 1", got)
	}
	f.Retain(nil)
	if f.Len() != 0 {
		t.Errorf("Retain(nil) left %d addresses", f.Len())
	}
}

func backend(key, policy string, n int) *route.Backend {
	return &route.Backend{Key: key, Balancer: policy, Endpoints: endpoints(n)}
}

func table(backends ...*route.Backend) *route.Table {
	var routes []*route.Route
	for i, b := range backends {
		routes = append(routes, &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: fmt.Sprintf("/%d", i)}, Backends: route.Single(b)})
	}
	return route.NewTable([]*route.VirtualHost{route.NewVirtualHost("h.test", routes)}, nil)
}

func TestRegistryStateSurvivesSwap(t *testing.T) {
	t.Parallel()
	r := NewRegistry(nil, nil)
	b1 := backend("ns/web:80", "", 3)
	if err := r.Sync(table(b1)); err != nil {
		t.Fatal(err)
	}
	bal := r.Get(b1)
	if ep := bal.Pick(b1.Endpoints, 0); ep.Address != "10.0.0.1:8080" {
		t.Fatalf("first pick %s", ep.Address)
	}

	// The controller builds a new table with new Backend values for the
	// same Service: the round-robin position carries on.
	b2 := backend("ns/web:80", "", 3)
	other := backend("ns/api:80", PolicyLeastRequest, 2)
	if err := r.Sync(table(b2, other)); err != nil {
		t.Fatal(err)
	}
	if r.Get(b2) != bal {
		t.Fatal("a new Backend with the same key got a new balancer")
	}
	if ep := r.Get(b2).Pick(b2.Endpoints, 0); ep.Address != "10.0.0.2:8080" {
		t.Errorf("pick after the swap = %s, want 10.0.0.2:8080 (the position survives)", ep.Address)
	}
	if _, ok := r.Get(other).(*LeastRequest); !ok {
		t.Errorf("least-request backend got %T", r.Get(other))
	}

	// Changing the policy of a backend gives it a fresh balancer; backends
	// no longer in the table are forgotten, with their addresses.
	b3 := backend("ns/web:80", PolicyLeastRequest, 1)
	if err := r.Sync(table(b3)); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 1 || r.InFlight().Len() != 1 {
		t.Errorf("after the last swap: %d balancers, %d addresses; want 1, 1", r.Len(), r.InFlight().Len())
	}
	if _, ok := r.Get(b3).(*LeastRequest); !ok {
		t.Errorf("backend switched to least-request got %T", r.Get(b3))
	}
}

func TestRegistryUnknownPolicy(t *testing.T) {
	t.Parallel()
	r := NewRegistry(new(InFlight), nil)
	b := backend("ns/web:80", "fastest", 2)
	err := r.Sync(table(b, backend("ns/ok:80", "", 1)))
	if !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("Sync error = %v, want ErrUnknownPolicy", err)
	}
	if got := err.Error(); got != `backend ns/web:80: unknown balancer policy "fastest" (want "round-robin", "least-request" or "ewma")` {
		t.Errorf("Sync error = %q", got)
	}
	if _, ok := r.Get(b).(*RoundRobin); !ok {
		t.Errorf("unknown policy served by %T, want *RoundRobin", r.Get(b))
	}
	// Reported on every swap, not only the first.
	if err := r.Sync(table(b)); !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("second Sync error = %v, want ErrUnknownPolicy", err)
	}
}

func TestRegistryGetWithoutSync(t *testing.T) {
	t.Parallel()
	r := NewRegistry(nil, nil)
	b := backend("ns/web:80", PolicyLeastRequest, 2)
	bal := r.Get(b)
	if r.Get(b) != bal || r.Len() != 1 {
		t.Error("Get does not remember the balancer it created")
	}
}

// TestConcurrentUse is for the race detector: requests pick, count and
// release while tables are swapped in.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	r := NewRegistry(nil, nil)
	tables := []*route.Table{
		table(backend("ns/a:80", "", 3), backend("ns/b:80", PolicyLeastRequest, 4)),
		table(backend("ns/a:80", PolicyLeastRequest, 2), backend("ns/c:80", "", 5)),
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.Sync(tables[i%2])
		}
	})
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				tbl := tables[(g+i)%2]
				for _, b := range tbl.Backends() {
					ep := r.Get(b).Pick(b.Endpoints, 0)
					c := r.InFlight().Acquire(ep.Address)
					c.Release()
				}
			}
		})
	}
	// Let the swapper run while the workers do.
	for range 100 {
		_ = r.Get(tables[0].Backends()[0])
	}
	close(stop)
	wg.Wait()
	for _, b := range tables[1].Backends() {
		for _, ep := range b.Endpoints {
			if n := r.InFlight().Count(ep.Address); n != 0 {
				t.Errorf("%s has %d in flight after every request ended", ep.Address, n)
			}
		}
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	r := NewRegistry(nil, nil)
	rr := backend("ns/a:80", "", 3)
	lr := backend("ns/b:80", PolicyLeastRequest, 3)
	if err := r.Sync(table(rr, lr)); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, b := range []*route.Backend{rr, lr} {
			ep := r.Get(b).Pick(b.Endpoints, 0)
			r.InFlight().Acquire(ep.Address).Release()
		}
	})
	if allocs != 0 {
		t.Errorf("Get+Pick+Acquire+Release allocates %.1f times, want 0", allocs)
	}
}
