package balancer

import (
	"errors"
	"fmt"

	"github.com/postern-dev/postern/proxy/route"
)

// Balancer picks the endpoint a request is sent to.
type Balancer interface {
	// Pick returns one of endpoints for a request whose hash key is key
	// (the pipeline computes it from what an affinity policy names: a
	// header, a cookie, the client address; 0 when the route has none),
	// or nil when there is none (the proxy answers 503). The returned
	// pointer points into endpoints. Pick is safe for concurrent use and
	// must not modify endpoints; it must not allocate.
	Pick(endpoints []route.Endpoint, key uint64) *route.Endpoint
}

// The policy names a route.Backend's Balancer field can hold.
const (
	// PolicyRoundRobin sends requests to the endpoints in turn. It is the
	// default: the empty name means round robin too.
	PolicyRoundRobin = "round-robin"
	// PolicyLeastRequest sends a request to the less busy of two endpoints
	// picked at random ("power of two choices").
	PolicyLeastRequest = "least-request"
	// PolicyEWMA sends a request to the endpoint of two picked at random
	// with the lower peak-EWMA latency times requests in flight (EWMA).
	PolicyEWMA = "ewma"
)

// ErrUnknownPolicy is returned (wrapped) by New for a policy name it does not
// know.
var ErrUnknownPolicy = errors.New("unknown balancer policy")

// New returns a new Balancer for the policy name: "" or "round-robin" for
// RoundRobin, "least-request" for LeastRequest, which reads the number of
// requests in flight to each endpoint from inflight. inflight may be nil
// for policies that do not use it; a LeastRequest without one picks at
// random.
func New(name string, inflight *InFlight) (Balancer, error) {
	switch name {
	case "", PolicyRoundRobin:
		return &RoundRobin{}, nil
	case PolicyLeastRequest:
		return &LeastRequest{InFlight: inflight}, nil
	case PolicyEWMA:
		return &EWMA{InFlight: inflight}, nil
	default:
		return nil, fmt.Errorf("%w %q (want %q, %q or %q)", ErrUnknownPolicy, name, PolicyRoundRobin, PolicyLeastRequest, PolicyEWMA)
	}
}
