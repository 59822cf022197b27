package pipeline

import (
	"net/http"
	"net/netip"

	"github.com/postern-dev/postern/proxy/route"
)

// sourceRanges is the route policy of route.SourceRanges, in nginx's
// access phase: after the rate limits, before authentication. A client
// whose address cannot be known (not over IP) is refused when an
// allow-list is set: the rule cannot be honoured for it.
type sourceRanges struct{ allow, deny []netip.Prefix }

func newSourceRanges(rt *route.Route) (sourceRanges, bool) {
	if rt.Policy == nil || rt.Policy.SourceRanges == nil {
		return sourceRanges{}, false
	}
	sr := rt.Policy.SourceRanges
	return sourceRanges{allow: sr.Allow, deny: sr.Deny}, len(sr.Allow)+len(sr.Deny) > 0
}

func (s sourceRanges) Request(x *Exchange) {
	ip, ok := clientAddr(x)
	if !ok {
		if len(s.allow) > 0 {
			x.fail(http.StatusForbidden, "allowlist-source-range: no client address")
		}
		return
	}
	for _, p := range s.deny {
		if p.Contains(ip) {
			x.fail(http.StatusForbidden, "denylist-source-range")
			return
		}
	}
	if len(s.allow) == 0 {
		return
	}
	for _, p := range s.allow {
		if p.Contains(ip) {
			return
		}
	}
	x.fail(http.StatusForbidden, "allowlist-source-range")
}
