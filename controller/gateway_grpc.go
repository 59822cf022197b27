package controller

import (
	"fmt"
	"regexp"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// grpcRoute translates gr (attachRoute). A gRPC method is the request
// path /service/method: a method match becomes a path match, its headers
// header matches, and its backends speak gRPC (HTTP/2 without TLS).
func (t *gatewayTranslation) grpcRoute(gr *gatewayv1.GRPCRoute) (RouteResult, bool) {
	src := source{kind: grpcRouteKind, namespace: gr.Namespace, name: gr.Name}
	return t.attachRoute(xRoute{src: src, meta: &gr.ObjectMeta, parentRefs: gr.Spec.ParentRefs, hostnames: gr.Spec.Hostnames,
		rules: func() ([]*route.Route, refsResult) { return t.grpcRules(src, gr) }})
}

// grpcRules returns the routes of gr's rules, one per match, for any
// host, and its ResolvedRefs condition.
func (t *gatewayTranslation) grpcRules(src source, gr *gatewayv1.GRPCRoute) ([]*route.Route, refsResult) {
	resolved := refsResult{ok: true, reason: string(gatewayv1.RouteReasonResolvedRefs)}
	var out []*route.Route
	for ri := range gr.Spec.Rules {
		rule := &gr.Spec.Rules[ri]
		var backends []route.WeightedBackend
		for _, ref := range rule.BackendRefs {
			weight := int32(1)
			if ref.Weight != nil {
				weight = *ref.Weight
			}
			be, res := t.backendRef(src, ref.BackendObjectReference, route.ProtocolGRPC, shareFails)
			if res.reason != "" && resolved.ok {
				resolved = res
			}
			wb := route.WeightedBackend{Backend: be, Weight: weight}
			if problem := grpcBackendFilters(&wb, ref.Filters); problem != "" {
				t.b.problem(src, ReasonUnsupportedFilter, fmt.Sprintf("rule %d backendRef %s %s; its share of the requests is answered 500", ri+1, quoteShort(string(ref.Name)), problem))
				wb = route.WeightedBackend{Backend: t.b.failing(src.namespace, "invalid-backend-filter", problem), Weight: weight}
			}
			backends = append(backends, wb)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.GRPCRouteMatch{{}}
		}
		pol, problem := grpcFilters(rule.Filters)
		for mi := range matches {
			m, mp := grpcMatch(&matches[mi])
			if mp != "" {
				t.b.problem(src, ReasonInvalidPath, fmt.Sprintf("rule %d match %d %s; it is not served", ri+1, mi+1, mp))
				continue
			}
			out = append(out, t.ruleRoute(src, ri, m, pol, backends, problem, false, len(rule.BackendRefs) == 0))
		}
	}
	return out, resolved
}

// grpcMatch returns the table match of a GRPCRoute match, or why it cannot
// be served. An exact service and method is an Exact path, an exact
// service alone a Prefix one (/service/…); the rest are expressions on
// the whole path.
func grpcMatch(gm *gatewayv1.GRPCRouteMatch) (route.Match, string) {
	m := route.Match{PathType: route.PathPrefix, Path: "/"}
	if mm := gm.Method; mm != nil && (mm.Service != nil || mm.Method != nil) {
		svc, method := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		switch {
		case !regex && svc != "" && method != "":
			m.PathType, m.Path = route.PathExact, "/"+svc+"/"+method
		case !regex && svc != "":
			m.PathType, m.Path = route.PathPrefix, "/"+svc
		default:
			part := func(v string) string {
				switch {
				case v == "":
					return "[^/]+"
				case regex:
					return "(?:" + v + ")"
				}
				return regexp.QuoteMeta(v)
			}
			expr := "^/" + part(svc) + "/" + part(method) + "$"
			if _, err := route.CompilePath(expr); err != nil {
				return m, "method expression " + quoteShort(svc+"/"+method) + " is not valid RE2"
			}
			m.PathType, m.Path = route.PathRegex, expr
		}
	}
	problem := headerMatches(&m, gm.Headers, func(h gatewayv1.GRPCHeaderMatch) (string, bool, string) {
		return string(h.Name), h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression, h.Value
	})
	return m, problem
}

// grpcFilters returns the policy of a GRPCRoute rule's filters, or why it
// cannot be served.
func grpcFilters(filters []gatewayv1.GRPCRouteFilter) (*route.Policy, string) {
	if len(filters) == 0 {
		return nil, ""
	}
	var pol route.Policy
	for i := range filters {
		f := &filters[i]
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			edits, problem := headerEdits(f.RequestHeaderModifier)
			if problem != "" {
				return nil, problem
			}
			pol.RequestHeaders = appendEdits(pol.RequestHeaders, edits)
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			edits, problem := headerEdits(f.ResponseHeaderModifier)
			if problem != "" {
				return nil, problem
			}
			pol.ResponseHeaders = appendEdits(pol.ResponseHeaders, edits)
		default:
			return nil, fmt.Sprintf("has a %s filter, which Postern does not support on GRPCRoutes yet", quoteShort(string(f.Type)))
		}
	}
	return &pol, ""
}

// grpcBackendFilters sets the header edits of a GRPCRoute backendRef's
// filters on wb, or says why they cannot be carried out.
func grpcBackendFilters(wb *route.WeightedBackend, filters []gatewayv1.GRPCRouteFilter) string {
	http := make([]gatewayv1.HTTPRouteFilter, 0, len(filters))
	for _, f := range filters {
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			http = append(http, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: f.RequestHeaderModifier})
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			http = append(http, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: f.ResponseHeaderModifier})
		default:
			return fmt.Sprintf("has a %s filter, which Postern does not support on a backendRef", quoteShort(string(f.Type)))
		}
	}
	return backendFilters(wb, http)
}
