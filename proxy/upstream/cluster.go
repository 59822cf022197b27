package upstream

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// Options configure a Cluster. Zero values mean the documented defaults.
type Options struct {
	// Logger receives ejections, retries and failed forwards (the engines
	// log through the Cluster). Nil means no logs.
	Logger *zap.Logger
	// DialTimeout bounds connecting to an endpoint, unless a backend sets
	// its own. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written, unless a route sets its own. It does not limit
	// how long a response body (a stream) may take. Zero means
	// DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle keep-alive connections to keep
	// per endpoint. Zero means DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// Health is the passive health tracker: it ejects endpoints that keep
	// failing. Nil means one of the Cluster's own with the defaults.
	Health *balancer.Health
	// Metrics counts failed attempts and retries. Nil means none.
	Metrics *observe.Metrics
}

// Cluster is every endpoint the proxy sends to, and the state kept for
// each across table swaps.
type Cluster struct {
	balancers *balancer.Registry
	inflight  *balancer.InFlight
	health    *balancer.Health
	pools     *pools
	log       *zap.Logger
	metrics   *observe.Metrics
	dial      time.Duration // default connect timeout
	respHdr   time.Duration // default response header timeout

	// addrRefs counts, per endpoint address of the table synced last,
	// the backends listing it, so that SyncPatch carries an endpoint
	// change over in time proportional to the change. Sync and SyncPatch
	// are serialised by their caller.
	addrRefs map[string]int32
}

// New returns a Cluster with no endpoints until the first Sync.
func New(opts Options) *Cluster {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	health := opts.Health
	if health == nil {
		health = new(balancer.Health)
	}
	inflight := new(balancer.InFlight)
	c := &Cluster{
		balancers: balancer.NewRegistry(inflight, health),
		inflight:  inflight,
		health:    health,
		log:       log,
		metrics:   opts.Metrics,
		dial:      opts.DialTimeout,
		respHdr:   opts.ResponseHeaderTimeout,
	}
	if c.dial <= 0 {
		c.dial = DefaultDialTimeout
	}
	if c.respHdr <= 0 {
		c.respHdr = DefaultResponseHeaderTimeout
	}
	perHost := opts.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = DefaultMaxIdleConnsPerHost
	}
	c.pools = &pools{perHost: perHost}
	return c
}

// Sync prepares the cluster for t, the table about to be served:
// balancers, in-flight counts and health carry over by backend key and
// endpoint address, what t no longer uses is forgotten, and the idle
// connections to endpoints t no longer has are closed (the busy ones when
// their requests end).
func (c *Cluster) Sync(t *route.Table) {
	if err := c.balancers.Sync(t); err != nil {
		c.log.Warn("unknown balancer policy, using round-robin", zap.Error(err))
	}
	c.addrRefs = make(map[string]int32)
	var addrs []string
	for _, b := range t.Backends() {
		for _, ep := range b.Endpoints {
			if c.addrRefs[ep.Address] == 0 {
				addrs = append(addrs, ep.Address)
			}
			c.addrRefs[ep.Address]++
		}
	}
	c.pools.retain(addrs)
}

// SyncPatch carries the state over to a table that p says differs from
// the one synced last only in the endpoints of some backends (an endpoint
// change): it touches those backends and the addresses that come and go
// with them, not every endpoint of the table. It reports false when it
// cannot (nothing synced yet, or a patch that changes more); the caller
// then calls Sync, which also rebuilds what this one changed.
func (c *Cluster) SyncPatch(p *route.Patch) bool {
	if c.addrRefs == nil {
		return false
	}
	gone := make(map[string]bool)
	for ob := range p.Backends {
		for _, ep := range ob.Endpoints {
			if c.addrRefs[ep.Address]--; c.addrRefs[ep.Address] <= 0 {
				delete(c.addrRefs, ep.Address)
				gone[ep.Address] = true
			}
		}
	}
	var added, removed []string
	for _, nb := range p.Backends {
		for _, ep := range nb.Endpoints {
			if c.addrRefs[ep.Address] == 0 {
				if gone[ep.Address] {
					delete(gone, ep.Address) // left one backend, still in another
				} else {
					added = append(added, ep.Address)
				}
			}
			c.addrRefs[ep.Address]++
		}
	}
	for a := range gone {
		removed = append(removed, a)
	}
	if !c.balancers.SyncPatch(p, added, removed) {
		return false
	}
	c.pools.update(added, removed)
	return true
}

// Pick returns the endpoint of be a request with balancer key key goes
// to: the pick of be's balancer among the endpoints health has not
// ejected (all of them when every one is: fail open). Nil means be has no
// endpoints (503).
func (c *Cluster) Pick(be *route.Backend, key uint64) *route.Endpoint {
	return c.balancers.Pick(be, key)
}

// Acquire counts a request in flight to addr until the counter's Release.
func (c *Cluster) Acquire(addr string) *balancer.Counter { return c.inflight.Acquire(addr) }

// Succeeded records an attempt that got a response head from addr.
func (c *Cluster) Succeeded(addr string) { c.health.Success(addr) }

// Failed records a failed attempt to reach addr, an endpoint of be, for
// a request to host, in the passive health tracker, and logs an ejection.
func (c *Cluster) Failed(be *route.Backend, addr, host string) {
	d := c.health.Failure(addr)
	if d == 0 {
		return
	}
	if ce := c.log.Check(zap.WarnLevel, "endpoint ejected after consecutive failures"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", addr),
			zap.String("host", host), zap.Duration("ejected_for", d))
	}
}

// Retry returns the endpoint of be a failed attempt goes to next: one not
// in tried (the addresses attempted so far, the failed one last), picked
// like Pick, and counts the retry. Nil means every endpoint was tried.
// The caller checked Retryable and its retry budget.
func (c *Cluster) Retry(be *route.Backend, key uint64, tried []string, err error) *route.Endpoint {
	next := c.balancers.PickRetry(be, key, tried)
	if next == nil {
		return nil
	}
	// The failed attempt counts as an upstream error; the last one is
	// counted with the answer (Failure).
	c.metrics.UpstreamError(err)
	c.metrics.Retried()
	if ce := c.log.Check(zap.DebugLevel, "retrying on another endpoint"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", tried[len(tried)-1]),
			zap.String("next", next.Address), zap.Error(err))
	}
	return next
}

// IdleTimedOut counts and logs a response cut because the endpoint at
// addr stayed silent for longer than the idle timeout d.
func (c *Cluster) IdleTimedOut(be *route.Backend, addr string, d time.Duration) {
	c.metrics.UpstreamError(ErrIdleTimeout{})
	if ce := c.log.Check(zap.WarnLevel, "upstream idle timeout, response cut"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", addr), zap.Duration("idle_timeout", d))
	}
}

// DeadlinePassed logs a response cut because the route's request or
// attempt timeout passed while it was relayed.
func (c *Cluster) DeadlinePassed(be *route.Backend, addr string) {
	c.metrics.UpstreamError(context.DeadlineExceeded)
	if ce := c.log.Check(zap.WarnLevel, "route timeout passed while the response was relayed, response cut"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", addr))
	}
}

// UpstreamError counts a failed attempt to reach an endpoint that is not
// counted otherwise (a response head that could not be read after an
// interim one).
func (c *Cluster) UpstreamError(err error) { c.metrics.UpstreamError(err) }

// Health returns the passive health tracker.
func (c *Cluster) Health() *balancer.Health { return c.health }

// Balancers returns the balancer registry (for tests and benchmarks).
func (c *Cluster) Balancers() *balancer.Registry { return c.balancers }

// CloseIdleConnections closes the idle keep-alive connections to every
// endpoint.
func (c *Cluster) CloseIdleConnections() { c.pools.closeIdle() }

// InFlight returns the count of requests in flight per endpoint address.
func (c *Cluster) InFlight() *balancer.InFlight { return c.inflight }
