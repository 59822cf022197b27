package balancer

import (
	"math/rand/v2"

	"github.com/postern-dev/postern/proxy/route"
)

var _ Balancer = (*LeastRequest)(nil)

// LeastRequest sends a request to the endpoint with fewer requests in
// flight of two picked at random, ties broken at random: the "power of two
// random choices" of Mitzenmacher, also Envoy's LEAST_REQUEST. Comparing two
// random endpoints instead of scanning for the global minimum keeps a pick
// O(1) and avoids the herd behaviour of every proxy goroutine choosing the
// same idle endpoint at once.
//
// A consequence worth knowing: the single busiest endpoint (strictly more in
// flight than every other) is never picked while there are two or more.
//
// The random numbers come from math/rand/v2's top-level functions, which
// are safe for concurrent use without a lock (a per-thread runtime source).
type LeastRequest struct {
	// InFlight counts the requests in flight per endpoint address; the
	// proxy increments it around every request. Nil means every endpoint
	// looks idle and picks are uniformly random.
	InFlight *InFlight
}

// twoRandom returns two distinct endpoints of endpoints picked at random
// (b nil when there is one; both nil when none), from one random number:
// i in [0,n) and j in [0,n) \ {i}. The modulo bias is below n/2^32, far
// under any load difference that matters.
func twoRandom(endpoints []route.Endpoint) (a, b *route.Endpoint) {
	n := len(endpoints)
	switch n {
	case 0:
		return nil, nil
	case 1:
		return &endpoints[0], nil
	}
	r := rand.Uint64()
	i := int((r & (1<<32 - 1)) % uint64(n))
	j := int((r >> 32) % uint64(n-1))
	if j >= i {
		j++
	}
	return &endpoints[i], &endpoints[j]
}

// Pick returns the less loaded of two distinct random endpoints, or nil when
// endpoints is empty.
func (lr *LeastRequest) Pick(endpoints []route.Endpoint, _ uint64) *route.Endpoint {
	a, b := twoRandom(endpoints)
	if b == nil {
		return a
	}
	ca, cb := lr.InFlight.Count(a.Address), lr.InFlight.Count(b.Address)
	switch {
	case ca < cb:
		return a
	case cb < ca:
		return b
	}
	// A tie: i and j are already in random order, so a is as random a
	// choice as b.
	return a
}
