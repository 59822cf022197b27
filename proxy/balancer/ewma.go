package balancer

import (
	"math"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

var _ Balancer = (*EWMA)(nil)

// EWMA is a peak-EWMA latency balancer (Finagle's, which ingress-nginx's
// load-balance: ewma follows): each endpoint's cost is a moving average
// of how long it takes to answer (the time to the response head), which
// jumps to a slower answer at once and decays towards faster ones with a
// time constant of ewmaDecay, times its requests in flight plus one; of
// two endpoints picked at random the cheaper gets the request. An
// endpoint that has not answered yet costs nothing, so a new one is tried
// at once.
type EWMA struct {
	// InFlight holds the counters whose Observe records the latencies,
	// and counts the requests in flight; nil picks at random.
	InFlight *InFlight
	// now is the clock (tests); nil is time.Now.
	now func() int64
}

// ewmaDecay is the time constant of the average: ingress-nginx's
// DECAY_TIME, 10 s.
const ewmaDecay = 10 * time.Second

// Observe records that the endpoint of c answered in rtt, for EWMA.
func (c *Counter) Observe(rtt time.Duration) { c.observe(float64(rtt), time.Now().UnixNano()) }

func (c *Counter) observe(rtt float64, now int64) {
	for {
		old := c.ewma.Load()
		cur, last := math.Float64frombits(old), c.stamp.Load()
		next := rtt
		if rtt < cur {
			// Faster than the average: decay towards it by the time since
			// the last observation. Slower: take it at once (the peak).
			w := math.Exp(-float64(max(now-last, 0)) / float64(ewmaDecay))
			next = cur*w + rtt*(1-w)
		}
		if c.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			c.stamp.Store(now)
			return
		}
	}
}

// cost returns the endpoint's load as EWMA weighs it at now.
func (c *Counter) cost(now int64) float64 {
	avg := math.Float64frombits(c.ewma.Load())
	if avg > 0 {
		// The average decays while nothing is observed, so that an
		// endpoint that was slow once is tried again.
		avg *= math.Exp(-float64(max(now-c.stamp.Load(), 0)) / float64(ewmaDecay))
	}
	return avg * float64(c.n.Load()+1)
}

// Pick returns the cheaper of two distinct random endpoints, or nil when
// endpoints is empty.
func (e *EWMA) Pick(endpoints []route.Endpoint, _ uint64) *route.Endpoint {
	a, b := twoRandom(endpoints)
	if b == nil || e.InFlight == nil {
		return a
	}
	var now int64
	if e.now != nil {
		now = e.now()
	} else {
		now = time.Now().UnixNano()
	}
	if e.InFlight.counter(b.Address).cost(now) < e.InFlight.counter(a.Address).cost(now) {
		return b
	}
	return a
}
