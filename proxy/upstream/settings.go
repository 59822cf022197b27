package upstream

import (
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// Defaults of Options.
const (
	// DefaultDialTimeout bounds connecting to an endpoint.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for an endpoint's
	// response headers once the request is sent.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultMaxIdleConnsPerHost is how many idle keep-alive connections
	// are kept per endpoint.
	DefaultMaxIdleConnsPerHost = 256
)

// Settings are what one forward of a request may take, resolved against
// the proxy's defaults: the pipeline fills them from the route's backend
// and policy, the engines follow them.
type Settings struct {
	// ConnectTimeout bounds connecting to an endpoint (504 when it runs
	// out).
	ConnectTimeout time.Duration
	// ReadTimeout bounds the wait for the response head once the request
	// was sent (504), and each write of a request body an endpoint stops
	// reading.
	ReadTimeout time.Duration
	// IdleTimeout is the longest an endpoint may stay silent while its
	// response body is relayed; the response is cut when it runs out.
	// Zero means no limit.
	IdleTimeout time.Duration
	// SendTimeout, when not zero, bounds each write of a request body
	// instead of ReadTimeout.
	SendTimeout time.Duration
	// Retries is how many times a failed attempt may be sent again to
	// another endpoint (see Retryable).
	Retries int
	// RetryTimeout, when not zero, ends the retries that long after the
	// first attempt began.
	RetryTimeout time.Duration
	// MaxBodySize is the largest request body sent on; a larger one
	// answers 413. Zero means no limit.
	MaxBodySize int64
	// Deadline, when not zero, ends the exchange: no response head by
	// then is a timeout (504), no attempt starts after it, and a response
	// being relayed is cut.
	Deadline time.Time
	// AttemptTimeout, when not zero, bounds each attempt from its start
	// to the end of its response, as Deadline bounds the exchange.
	AttemptTimeout time.Duration
}

// AttemptEnd returns when an attempt that starts at start must be over:
// the earlier of its AttemptTimeout and the Deadline; zero for never.
func (s *Settings) AttemptEnd(start time.Time) time.Time {
	end := s.Deadline
	if s.AttemptTimeout > 0 {
		if a := start.Add(s.AttemptTimeout); end.IsZero() || a.Before(end) {
			end = a
		}
	}
	return end
}

// Expired reports whether the Deadline has passed: no attempt may start.
func (s *Settings) Expired() bool { return !s.Deadline.IsZero() && !time.Now().Before(s.Deadline) }

// Defaults returns the settings of a route that sets none: the proxy's
// timeouts, route.DefaultRetries, no idle timeout and no body limit.
func (c *Cluster) Defaults() Settings {
	return Settings{ConnectTimeout: c.dial, ReadTimeout: c.respHdr, Retries: route.DefaultRetries}
}
