package balancer

import (
	"sync/atomic"

	"github.com/postern-dev/postern/proxy/route"
)

var _ Balancer = (*RoundRobin)(nil)

// RoundRobin sends requests to the endpoints in turn. Its zero value is
// ready to use.
//
// The position is one atomic counter taken modulo the number of endpoints
// at each pick, so that when the endpoint list changes (a table swap adds
// or removes an endpoint) the next picks simply continue through the new
// list: no endpoint is favoured and nothing has to be reset. Over k*n picks
// from an unchanging list of n endpoints every endpoint is picked exactly k
// times.
type RoundRobin struct {
	next atomic.Uint64
}

// Pick returns the next endpoint in turn, or nil when endpoints is empty.
func (rr *RoundRobin) Pick(endpoints []route.Endpoint, _ uint64) *route.Endpoint {
	n := uint64(len(endpoints))
	if n == 0 {
		return nil
	}
	i := (rr.next.Add(1) - 1) % n
	return &endpoints[i]
}
