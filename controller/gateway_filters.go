package controller

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// The filters of HTTPRoute rules and backendRefs, and rule timeouts: what
// they become in the table's route policies and weighted backends.

// filters returns the policy of the filters of rule for a route with
// match m, whether it redirects, or why it cannot be served.
func (t *gatewayTranslation) filters(rule *gatewayv1.HTTPRouteRule, m route.Match) (*route.Policy, bool, string) {
	var pol route.Policy
	used := false
	redirects := false
	for i := range rule.Filters {
		f := &rule.Filters[i]
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			edits, problem := headerEdits(f.RequestHeaderModifier)
			if problem != "" {
				return nil, false, problem
			}
			pol.RequestHeaders = appendEdits(pol.RequestHeaders, edits)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			edits, problem := headerEdits(f.ResponseHeaderModifier)
			if problem != "" {
				return nil, false, problem
			}
			pol.ResponseHeaders = appendEdits(pol.ResponseHeaders, edits)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			rd := f.RequestRedirect
			if rd == nil {
				return nil, false, "has a RequestRedirect filter without requestRedirect"
			}
			ur := &route.URLRedirect{Code: http.StatusFound}
			if rd.Scheme != nil {
				ur.Scheme = strings.ToLower(*rd.Scheme)
			}
			if rd.Hostname != nil {
				ur.Host = asciiLower(string(*rd.Hostname))
			}
			if rd.Port != nil {
				ur.Port = int(*rd.Port)
			}
			if rd.StatusCode != nil {
				ur.Code = *rd.StatusCode
			}
			pm, problem := pathModifier(rd.Path, m)
			if problem != "" {
				return nil, false, problem
			}
			ur.Path = pm
			pol.URLRedirect = ur
			redirects = true
		case gatewayv1.HTTPRouteFilterURLRewrite:
			rw := f.URLRewrite
			if rw == nil {
				return nil, false, "has a URLRewrite filter without urlRewrite"
			}
			ur := &route.URLRewrite{}
			if rw.Hostname != nil {
				ur.Host = string(*rw.Hostname)
			}
			pm, problem := pathModifier(rw.Path, m)
			if problem != "" {
				return nil, false, problem
			}
			ur.Path = pm
			pol.URLRewrite = ur
		case gatewayv1.HTTPRouteFilterRequestMirror:
			// Its backend is one of the route's (mirrors), weight 0.
			if f.RequestMirror == nil {
				return nil, false, "has a RequestMirror filter without requestMirror"
			}
		case gatewayv1.HTTPRouteFilterCORS:
			if f.CORS == nil {
				return nil, false, "has a CORS filter without cors"
			}
			pol.CORS = gatewayCORS(f.CORS)
		default:
			return nil, false, fmt.Sprintf("has a %s filter, which Postern does not support yet", quoteShort(string(f.Type)))
		}
		used = true
	}
	if pol.URLRedirect != nil && pol.URLRewrite != nil {
		return nil, false, "has both a RequestRedirect and a URLRewrite filter, which cannot be combined"
	}
	if !used {
		return nil, false, ""
	}
	return &pol, redirects, ""
}

// longestTimeout is what a timeout of "0s" (disabled, in the Gateway
// API) is: Postern's response header timeout cannot be turned off, so it
// is made as long as can matter.
const longestTimeout = route.Duration(365 * 24 * time.Hour)

// routeTimeouts adds a rule's timeouts to pol (a new policy when nil):
// request bounds the whole exchange (RequestTimeout), backendRequest each
// attempt (AttemptTimeout); either sets the wait for the response head to
// what it allows, since Postern's default must not cut it short, and "0s"
// turns the timeout off.
func routeTimeouts(pol *route.Policy, to *gatewayv1.HTTPRouteTimeouts) (*route.Policy, string) {
	parse := func(field string, d *gatewayv1.Duration) (time.Duration, bool, string) {
		if d == nil {
			return 0, false, ""
		}
		v, err := time.ParseDuration(string(*d))
		if err != nil || v < 0 {
			return 0, false, fmt.Sprintf("has a timeouts.%s of %s, which is not a duration", field, quoteShort(string(*d)))
		}
		return v, true, ""
	}
	request, hasRequest, problem := parse("request", to.Request)
	if problem != "" {
		return nil, problem
	}
	attempt, hasAttempt, problem := parse("backendRequest", to.BackendRequest)
	if problem != "" {
		return nil, problem
	}
	if !hasRequest && !hasAttempt {
		return pol, ""
	}
	if pol == nil {
		pol = &route.Policy{}
	}
	pol.ReadTimeout = longestTimeout
	if hasRequest && request > 0 {
		pol.RequestTimeout = route.Duration(request)
	}
	if hasAttempt && attempt > 0 {
		pol.AttemptTimeout = route.Duration(attempt)
		pol.ReadTimeout = route.Duration(attempt)
	}
	return pol, ""
}

// gatewayCORS returns the table form of an HTTPRoute's CORS filter, with
// the Gateway API's semantics (route.CORS.Gateway).
func gatewayCORS(f *gatewayv1.HTTPCORSFilter) *route.CORS {
	c := &route.CORS{Gateway: true, MaxAge: 5, AllowCredentials: f.AllowCredentials != nil && *f.AllowCredentials}
	if f.MaxAge > 0 {
		c.MaxAge = int(f.MaxAge)
	}
	for _, o := range f.AllowOrigins {
		c.AllowOrigins = append(c.AllowOrigins, string(o))
	}
	join := func(n int, at func(int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = at(i)
		}
		if slices.Contains(parts, "*") {
			return "*"
		}
		return strings.Join(parts, ", ")
	}
	c.AllowMethods = join(len(f.AllowMethods), func(i int) string { return string(f.AllowMethods[i]) })
	c.AllowHeaders = join(len(f.AllowHeaders), func(i int) string { return string(f.AllowHeaders[i]) })
	c.ExposeHeaders = join(len(f.ExposeHeaders), func(i int) string { return string(f.ExposeHeaders[i]) })
	return c
}

// appendEdits appends more to edits.
func appendEdits(edits *route.HeaderEdits, more route.HeaderEdits) *route.HeaderEdits {
	if edits == nil {
		edits = &route.HeaderEdits{}
	}
	*edits = append(*edits, more...)
	return edits
}

// headerEdits returns the edits of a header modifier filter: set, then
// add, then remove, the values taken literally.
func headerEdits(f *gatewayv1.HTTPHeaderFilter) (route.HeaderEdits, string) {
	if f == nil {
		return nil, "has a header modifier filter without its settings"
	}
	var out route.HeaderEdits
	add := func(op route.HeaderOp, name, value string) string {
		canonical, err := editName(name)
		if err != nil {
			return "has a header edit: " + err.Error()
		}
		e := route.HeaderEdit{Op: op, Name: canonical}
		if op != route.HeaderRemove {
			e.Value = route.LiteralTemplate(value)
		}
		out = append(out, e)
		return ""
	}
	for _, h := range f.Set {
		if p := add(route.HeaderSet, string(h.Name), h.Value); p != "" {
			return nil, p
		}
	}
	for _, h := range f.Add {
		if p := add(route.HeaderAdd, string(h.Name), h.Value); p != "" {
			return nil, p
		}
	}
	for _, name := range f.Remove {
		if p := add(route.HeaderRemove, name, ""); p != "" {
			return nil, p
		}
	}
	return out, ""
}

// pathModifier returns the table form of a filter's path modifier for a
// route with match m.
func pathModifier(p *gatewayv1.HTTPPathModifier, m route.Match) (*route.PathModifier, string) {
	if p == nil {
		return nil, ""
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			return nil, "has a ReplaceFullPath path modifier without replaceFullPath"
		}
		return &route.PathModifier{Type: route.ReplaceFullPath, Value: *p.ReplaceFullPath}, ""
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			return nil, "has a ReplacePrefixMatch path modifier without replacePrefixMatch"
		}
		if m.PathType != route.PathPrefix {
			return nil, "has a ReplacePrefixMatch path modifier on a match that is not a PathPrefix"
		}
		return &route.PathModifier{Type: route.ReplacePrefixMatch, Value: *p.ReplacePrefixMatch, Prefix: m.Path}, ""
	}
	return nil, "has a path modifier of type " + quoteShort(string(p.Type)) + ", which is not supported"
}

// mirrors returns the mirror backends of a rule's RequestMirror filters
// (weight 0, route.WeightedBackend.Mirror), each with the share of the
// requests it gets a copy of (percent, or fraction; all when neither);
// a backendRef that cannot be resolved gets no copies and says why in
// the route's ResolvedRefs.
func (t *gatewayTranslation) mirrors(src source, filters []gatewayv1.HTTPRouteFilter) ([]route.WeightedBackend, refsResult) {
	var out []route.WeightedBackend
	var bad refsResult
	for i := range filters {
		rm := filters[i].RequestMirror
		if filters[i].Type != gatewayv1.HTTPRouteFilterRequestMirror || rm == nil {
			continue
		}
		be, res := t.backendRef(src, rm.BackendRef, route.ProtocolHTTP, "it gets no copies of the requests")
		if res.reason != "" && bad.reason == "" {
			bad = res
		}
		share := &route.MirrorShare{Numerator: 100, Denominator: 100}
		switch {
		case rm.Percent != nil:
			share.Numerator = *rm.Percent
		case rm.Fraction != nil:
			share.Numerator, share.Denominator = rm.Fraction.Numerator, 100
			if rm.Fraction.Denominator != nil {
				share.Denominator = *rm.Fraction.Denominator
			}
		}
		share.Numerator = max(0, min(share.Numerator, share.Denominator))
		if share.Denominator <= 0 {
			share.Numerator, share.Denominator = 0, 1
		}
		out = append(out, route.WeightedBackend{Backend: be, Weight: 0, Mirror: share})
	}
	return out, bad
}

// backendFilters sets the header edits of a backendRef's filters on wb,
// or says why they cannot be carried out.
func backendFilters(wb *route.WeightedBackend, filters []gatewayv1.HTTPRouteFilter) string {
	for i := range filters {
		f := &filters[i]
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			edits, problem := headerEdits(f.RequestHeaderModifier)
			if problem != "" {
				return problem
			}
			wb.RequestHeaders = appendEdits(wb.RequestHeaders, edits)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			edits, problem := headerEdits(f.ResponseHeaderModifier)
			if problem != "" {
				return problem
			}
			wb.ResponseHeaders = appendEdits(wb.ResponseHeaders, edits)
		default:
			return fmt.Sprintf("has a %s filter, which Postern does not support on a backendRef", quoteShort(string(f.Type)))
		}
	}
	return ""
}
