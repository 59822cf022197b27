package pipeline

import (
	"net/http"
	"net/netip"

	"github.com/postern-dev/postern/proxy/route"
)

// The access policy: who may use a route, in nginx's access phase (after
// the rate limits, before the content): the source ranges, basic auth and
// external auth, in that order (the order of nginx's access handlers), each
// with a verdict, combined as ingress-nginx's satisfy says:
//   - all (the default): the first check that refuses answers;
//   - any: the first check that allows lets the request through; when
//     none does, the refusals' answer is given (a 401 wins over a 403, as
//     in nginx), and a check that fails (the auth service broke) answers
//     at once.
//
// A 401, whichever check gave it, becomes the redirect to the external
// auth's sign-in page when there is one (ingress-nginx's error_page 401).

// verdict is what one access check says of a request.
type verdict uint8

const (
	// declined: the check has no opinion (a deny list that does not
	// cover the client).
	declined verdict = iota
	// allowed: the check lets the request through.
	allowed
	// refused: the check refuses it with a 401 or 403.
	refused
	// failed: the check cannot decide (the auth service broke): the
	// request is answered at once, whatever satisfy says.
	failed
)

// access is the route policy of the route's access checks.
type access struct {
	ranges   *sourceRanges // nil: none
	basic    *basicAuth
	external *externalAuth
	any      bool // satisfy: any
}

func newAccess(rt *route.Route, k *kept) (*access, bool) {
	p := rt.Policy
	if p == nil {
		return nil, false
	}
	a := &access{any: p.SatisfyAny}
	if sr := p.SourceRanges; sr != nil && len(sr.Allow)+len(sr.Deny) > 0 {
		a.ranges = &sourceRanges{allow: sr.Allow, deny: sr.Deny}
	}
	if p.BasicAuth != nil {
		a.basic = newBasicAuth(p.BasicAuth, &k.users)
	}
	if p.ExternalAuth != nil {
		a.external = newExternalAuth(rt, p.ExternalAuth, k.auth)
	}
	return a, a.ranges != nil || a.basic != nil || a.external != nil
}

func (a *access) Request(x *Exchange) {
	var held Reply // under satisfy any, the refusal to give if none allows
	ran := false   // the external auth's answer is in x
	for i := range 3 {
		var v verdict
		var r Reply
		switch i {
		case 0:
			if a.ranges == nil {
				continue
			}
			v, r = a.ranges.check(x)
		case 1:
			if a.basic == nil {
				continue
			}
			v, r = a.basic.check(x)
		case 2:
			if a.external == nil {
				continue
			}
			v, r = a.external.check(x)
			ran = true
		}
		switch v {
		case allowed:
			if a.any {
				a.pass(x, ran)
				return
			}
		case refused:
			if !a.any {
				a.refuse(x, r)
				return
			}
			if held.Status != http.StatusUnauthorized {
				held = r
			}
		case failed:
			x.Reply = r
			return
		}
	}
	if held.Status != 0 {
		a.refuse(x, held)
		return
	}
	a.pass(x, ran)
}

// pass lets x through: the client's Authorization is not sent on when
// basic auth is on (ingress-nginx clears it), and the auth response
// fields are those of the auth service's answer, or none when it was not
// asked.
func (a *access) pass(x *Exchange, ran bool) {
	if a.basic != nil {
		x.Req.Del("Authorization")
	}
	if a.external != nil && !ran {
		for _, h := range a.external.cfg.ResponseHeaders {
			x.Req.Del(h)
		}
	}
}

// refuse answers x with r, a 401 as the redirect to the sign-in page
// when the external auth has one.
func (a *access) refuse(x *Exchange, r Reply) {
	if r.Status == http.StatusUnauthorized && a.external != nil && a.external.signin != nil {
		r = a.external.signinReply(x)
	}
	x.Reply = r
}

// sourceRanges is the check of route.SourceRanges, as nginx's allow and
// deny (the deny list first, then the allow list and "deny all"). A
// client whose address cannot be known (not over IP) is refused when an
// allow list is set: the rule cannot be honoured for it.
type sourceRanges struct{ allow, deny []netip.Prefix }

func (s *sourceRanges) check(x *Exchange) (verdict, Reply) {
	ip, ok := clientAddr(x)
	if !ok {
		if len(s.allow) > 0 {
			return refused, ErrorReply(http.StatusForbidden, "allowlist-source-range: no client address")
		}
		return declined, Reply{}
	}
	for _, p := range s.deny {
		if p.Contains(ip) {
			return refused, ErrorReply(http.StatusForbidden, "denylist-source-range")
		}
	}
	if len(s.allow) == 0 {
		return declined, Reply{}
	}
	for _, p := range s.allow {
		if p.Contains(ip) {
			return allowed, Reply{}
		}
	}
	return refused, ErrorReply(http.StatusForbidden, "allowlist-source-range")
}
