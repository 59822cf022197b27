package balancer

import (
	"fmt"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// The average takes a slower answer at once and decays towards faster
// ones with the time between observations.
func TestEWMAPeak(t *testing.T) {
	t.Parallel()
	var c Counter
	ms := float64(time.Millisecond)
	c.observe(10*ms, 0)
	if got := c.cost(0); got != 10*ms {
		t.Fatalf("cost %v after one answer of 10 ms", time.Duration(got))
	}
	c.observe(100*ms, int64(time.Second))
	if got := c.cost(int64(time.Second)); got != 100*ms {
		t.Errorf("cost %v after a slower answer, want its 100 ms at once", time.Duration(got))
	}
	// A fast answer 10 s later (one time constant) moves the average
	// about 63% of the way.
	c.observe(0, int64(11*time.Second))
	if got := time.Duration(c.cost(int64(11 * time.Second))); got < 36*time.Millisecond || got > 38*time.Millisecond {
		t.Errorf("cost %v after a fast answer a time constant later, want about 36.8 ms", got)
	}
	// Requests in flight multiply it.
	c.n.Add(2)
	if got := time.Duration(c.cost(int64(11 * time.Second))); got < 108*time.Millisecond || got > 114*time.Millisecond {
		t.Errorf("cost %v with 2 in flight, want three times", got)
	}
}

// Traffic moves away from a slow endpoint, and an endpoint without an
// answer yet is tried.
func TestEWMAPrefersFast(t *testing.T) {
	t.Parallel()
	f := new(InFlight)
	eps := []route.Endpoint{{Address: "192.0.2.1:80"}, {Address: "192.0.2.2:80"}, {Address: "192.0.2.3:80"}}
	var now int64
	e := &EWMA{InFlight: f, now: func() int64 { return now }}
	latency := map[string]time.Duration{"192.0.2.1:80": 50 * time.Millisecond, "192.0.2.2:80": time.Millisecond, "192.0.2.3:80": 2 * time.Millisecond}
	picks := map[string]int{}
	for range 3000 {
		ep := e.Pick(eps, 0)
		picks[ep.Address]++
		now += int64(time.Millisecond)
		f.counter(ep.Address).observe(float64(latency[ep.Address]), now)
	}
	if slow := picks["192.0.2.1:80"]; slow > 100 {
		t.Errorf("the 50 ms endpoint got %d of 3000 requests: %v", slow, picks)
	}
	if picks["192.0.2.2:80"] < picks["192.0.2.3:80"] {
		t.Errorf("the 1 ms endpoint got fewer than the 2 ms one: %v", picks)
	}
	eps = append(eps, route.Endpoint{Address: "192.0.2.4:80"})
	fresh := 0
	for range 100 {
		if e.Pick(eps, 0).Address == "192.0.2.4:80" {
			fresh++
		}
	}
	if fresh < 30 {
		t.Errorf("a new endpoint got %d of 100 picks, want it tried first", fresh)
	}
}

func BenchmarkEWMA(b *testing.B) {
	f := new(InFlight)
	var eps []route.Endpoint
	for i := range 10 {
		eps = append(eps, route.Endpoint{Address: fmt.Sprintf("192.0.2.%d:80", i)})
		f.Acquire(eps[i].Address).Observe(time.Duration(i+1) * time.Millisecond)
	}
	e := &EWMA{InFlight: f}
	b.ReportAllocs()
	for b.Loop() {
		if e.Pick(eps, 0) == nil {
			b.Fatal("no pick")
		}
	}
}
