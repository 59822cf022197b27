package pipeline

import (
	"math/rand/v2"
	"regexp"

	"github.com/postern-dev/postern/proxy/route"
)

// canary is the route policy of an ingress-nginx canary (route.Canary):
// it sends a request to the route's canary backend when the header, the
// cookie or the weight says so, in that order, as ingress-nginx's
// balancer decides; otherwise it leaves the choice to the route's
// weighted backends, which give the canary nothing. It runs last among
// the route's policies: redirects, rewrites and limits are the
// mainline's, for canary traffic too.
type canary struct {
	be          *route.Backend
	header      string
	value       string
	pattern     *regexp.Regexp
	badPattern  bool // a pattern RE2 cannot compile: the header means mainline
	cookie      string
	weight      int
	weightTotal int
}

// newCanary returns the canary policy of rt, if it has a canary.
func newCanary(rt *route.Route) (canary, bool) {
	be := rt.CanaryBackend()
	if be == nil {
		return canary{}, false
	}
	c := rt.Canary
	p := canary{be: be, header: c.Header, value: c.HeaderValue, cookie: c.Cookie, weight: c.Weight, weightTotal: max(c.WeightTotal, 100)}
	if c.HeaderValue == "" && c.HeaderPattern != "" {
		re, err := regexp.Compile(c.HeaderPattern)
		p.pattern, p.badPattern = re, err != nil
	}
	return p, true
}

// The values of canary-by-header and canary-by-cookie that decide.
const (
	canaryAlways = "always"
	canaryNever  = "never"
)

func (c canary) Request(x *Exchange) {
	if x.Backend != nil {
		return // a session's cookie chose the side (affinity)
	}
	if c.header != "" {
		if v, n := x.In.Header(c.header); n > 0 {
			switch {
			case c.value != "":
				if v == c.value {
					x.Backend = c.be
					return
				}
			case c.badPattern:
				return
			case c.pattern != nil:
				if c.pattern.MatchString(v) {
					x.Backend = c.be
					return
				}
			case v == canaryAlways:
				x.Backend = c.be
				return
			case v == canaryNever:
				return
			}
		}
	}
	if c.cookie != "" {
		switch v, _ := x.Cookie(c.cookie); v {
		case canaryAlways:
			x.Backend = c.be
			return
		case canaryNever:
			return
		}
	}
	if c.weight > 0 && rand.IntN(c.weightTotal) < c.weight {
		x.Backend = c.be
	}
}
