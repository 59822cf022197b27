package route

// Canary is what an ingress-nginx canary Ingress adds to a route of its
// mainline Ingress (same host and path): the route's last backend, whose
// weight is zero so that the weighted choice never picks it, is the
// canary's, and a request goes there when these rules say so, in
// ingress-nginx's order: the header, then the cookie, then the weight.
// Everything else of the route (its policy) is the mainline's.
type Canary struct {
	// Header is the request header (canonical form) that decides first:
	// with HeaderValue, that exact value sends the request to the canary
	// and any other falls through to the cookie; with HeaderPattern, a
	// match does; without either, "always" sends it to the canary and
	// "never" to the mainline, and any other value falls through.
	Header string `json:"header,omitempty"`
	// HeaderValue is canary-by-header-value; empty: none.
	HeaderValue string `json:"headerValue,omitempty"`
	// HeaderPattern is canary-by-header-pattern, an RE2 expression
	// matched anywhere in the value, used when HeaderValue is empty. One
	// RE2 cannot compile sends every request that has the header to the
	// mainline, as ingress-nginx's runtime error does.
	HeaderPattern string `json:"headerPattern,omitempty"`
	// Cookie is the cookie that decides next: "always" to the canary,
	// "never" to the mainline, any other value falls through.
	Cookie string `json:"cookie,omitempty"`
	// Weight out of WeightTotal of the remaining requests go to the
	// canary, at random.
	Weight int `json:"weight,omitempty"`
	// WeightTotal is at least 100 (ingress-nginx's rule: a smaller total
	// is 100).
	WeightTotal int `json:"weightTotal"`
}

// CanaryBackend returns the canary's backend of r, nil when r has no
// canary.
func (r *Route) CanaryBackend() *Backend {
	if r.Canary == nil || len(r.Backends) < 2 {
		return nil
	}
	for i := len(r.Backends) - 1; i > 0; i-- {
		if !r.Backends[i].ErrorPage && r.Backends[i].Mirror == nil {
			return r.Backends[i].Backend
		}
	}
	return nil
}
