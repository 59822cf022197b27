package pipeline

import (
	"math/rand/v2"

	"github.com/postern-dev/postern/proxy/route"
)

// hashBy is the route policy of route.HashBy: it evaluates the key and
// leaves its hash for the endpoint pick (hashPick), which Decide makes
// instead of the backend's balancer. It does nothing when the route has
// cookie affinity, which ingress-nginx prefers.
type hashBy struct {
	key    *route.Template
	subset int
}

// maxSubset bounds upstream-hash-by-subset-size (the pick keeps the best
// on the stack).
const maxSubset = 64

func newHashBy(rt *route.Route) (hashBy, bool) {
	if rt.Policy == nil || rt.Policy.HashBy == nil || rt.Policy.HashBy.Key == nil || rt.Policy.Affinity != nil {
		return hashBy{}, false
	}
	return hashBy{key: rt.Policy.HashBy.Key, subset: min(max(rt.Policy.HashBy.SubsetSize, 0), maxSubset)}, true
}

func (h hashBy) Request(x *Exchange) {
	var buf [128]byte
	x.hash = hashed{on: true, key: fnv64(x.Expand(buf[:0], h.key, nil)), subset: h.subset}
}

// hashed is what hashBy leaves for the pick.
type hashed struct {
	on     bool
	key    uint64
	subset int
}

// hashPick returns the endpoint of eps for key: the one of highest
// rendezvous score that is not ejected or, with a subset, one at random
// of the subset highest-scoring ones that are not; nil when eps is empty.
// A key keeps its endpoints while they exist, and a new endpoint takes
// only the keys it scores highest for.
func hashPick(eps []route.Endpoint, h hashed, ejected func(string) bool) *route.Endpoint {
	if h.subset <= 1 || len(eps) <= 1 {
		return rendezvous(eps, h.key, ejected)
	}
	n := min(h.subset, len(eps))
	// The n best by score, kept sorted, best first.
	var best [maxSubset]*route.Endpoint
	var score [maxSubset]uint64
	kept := 0
	for i := range eps {
		ep := &eps[i]
		s := mix64(h.key ^ endpointID(ep.Address))
		if kept == n && s <= score[n-1] {
			continue
		}
		j := min(kept, n-1)
		for j > 0 && score[j-1] < s {
			best[j], score[j] = best[j-1], score[j-1]
			j--
		}
		best[j], score[j] = ep, s
		if kept < n {
			kept++
		}
	}
	var up [maxSubset]*route.Endpoint
	m := 0
	for _, ep := range best[:kept] {
		if !ejected(ep.Address) {
			up[m] = ep
			m++
		}
	}
	if m == 0 {
		// The whole subset is failing: the key goes where the others are.
		return rendezvous(eps, h.key, ejected)
	}
	return up[rand.IntN(m)]
}
