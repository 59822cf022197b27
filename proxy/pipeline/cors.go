package pipeline

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// cors is the route policy of route.CORS, where ingress-nginx puts its
// CORS block: after app-root, before the redirects, the rewrite, the
// redirect to HTTPS and every access check (reference §1.5). For a
// request whose Origin is allowed it sets the Access-Control-* fields on
// the response, whatever answers it (nginx's more_set_headers replaces
// the endpoint's own), and answers a preflight itself.
type cors struct {
	any     bool
	origins []originPattern
	fields  []Edit // every field but Access-Control-Allow-Origin
	// gateway: the Gateway API's semantics (route.CORS.Gateway), where
	// anyMethod and anyHeader echo a preflight's Access-Control-Request-*.
	gateway, anyMethod, anyHeader bool
	methods, headers              string
	maxAge                        int
}

// originPattern is an allowed origin, lower case: prefix alone, or prefix,
// one DNS label, suffix when wild.
type originPattern struct {
	prefix, suffix string
	wild           bool
}

// The fields of a preflight answer besides the Access-Control-* ones, as
// ingress-nginx writes them (its Content-Type lacks the ';').
var preflightFields = []Edit{{Op: Set, Name: "Content-Type", Value: "text/plain charset=UTF-8"}}

// newCORS returns the CORS policy of rt, if it has one.
func newCORS(rt *route.Route) (cors, bool) {
	if rt.Policy == nil || rt.Policy.CORS == nil {
		return cors{}, false
	}
	c := rt.Policy.CORS
	if c.Gateway {
		return newGatewayCORS(c)
	}
	p := cors{any: c.AnyOrigin}
	for _, o := range c.AllowOrigins {
		o = strings.ToLower(o)
		if pre, suf, wild := strings.Cut(o, "*"); wild {
			p.origins = append(p.origins, originPattern{prefix: pre, suffix: suf, wild: true})
		} else {
			p.origins = append(p.origins, originPattern{prefix: o})
		}
	}
	if c.AllowCredentials {
		p.fields = append(p.fields, Edit{Set, "Access-Control-Allow-Credentials", "true"})
	}
	p.fields = append(p.fields,
		Edit{Set, "Access-Control-Allow-Methods", c.AllowMethods},
		Edit{Set, "Access-Control-Allow-Headers", c.AllowHeaders})
	if c.ExposeHeaders != "" {
		p.fields = append(p.fields, Edit{Set, "Access-Control-Expose-Headers", c.ExposeHeaders})
	}
	p.fields = append(p.fields, Edit{Set, "Access-Control-Max-Age", strconv.Itoa(c.MaxAge)})
	return p, p.any || len(p.origins) > 0
}

func (c cors) Request(x *Exchange) {
	if c.gateway {
		c.gatewayRequest(x)
		return
	}
	origin := "*"
	if !c.any {
		o, n := x.In.Header("Origin")
		if n == 0 || !c.allows(o) || !fieldSafe(o) {
			return
		}
		origin = o
	}
	x.Resp.Set("Access-Control-Allow-Origin", origin)
	for _, f := range c.fields {
		x.Resp.add(f)
	}
	if x.In.Method() == http.MethodOptions {
		x.Reply = Reply{Status: http.StatusNoContent, Fields: preflightFields, Reason: "CORS preflight"}
	}
}

// allows reports whether origin ends with one of the allowed origins,
// without regard to case.
func (c cors) allows(origin string) bool {
	for _, p := range c.origins {
		if p.matches(origin) {
			return true
		}
	}
	return false
}

// matches reports whether o ends with the pattern: prefix (and, when
// wild, one or more of [A-Za-z0-9-] then suffix), as the regex
// "(prefix[A-Za-z0-9-]+suffix)$" that ingress-nginx builds matches it.
func (p originPattern) matches(o string) bool {
	if !p.wild {
		return hasSuffixFold(o, p.prefix)
	}
	if !hasSuffixFold(o, p.suffix) {
		return false
	}
	rest := o[:len(o)-len(p.suffix)]
	// The label runs back from the end of rest; the prefix may end at any
	// point of it that leaves at least one character of the label.
	for i := len(rest) - 1; i >= 0 && isLabelByte(rest[i]); i-- {
		if hasSuffixFold(rest[:i], p.prefix) {
			return true
		}
	}
	return false
}

func isLabelByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-'
}

// hasSuffixFold reports whether s ends with the lower-case ASCII suffix,
// without regard to case.
func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// newGatewayCORS returns the policy of an HTTPRoute's CORS filter.
func newGatewayCORS(c *route.CORS) (cors, bool) {
	p := cors{gateway: true}
	for _, o := range c.AllowOrigins {
		o = strings.ToLower(o)
		switch pre, suf, wild := strings.Cut(o, "*"); {
		case o == "*":
			p.any = true
		case wild:
			p.origins = append(p.origins, originPattern{prefix: pre, suffix: suf, wild: true})
		default:
			p.origins = append(p.origins, originPattern{prefix: o})
		}
	}
	p.anyMethod, p.anyHeader = c.AllowMethods == "*", c.AllowHeaders == "*"
	p.methods, p.headers, p.maxAge = c.AllowMethods, c.AllowHeaders, c.MaxAge
	if c.AllowCredentials {
		p.fields = append(p.fields, Edit{Set, "Access-Control-Allow-Credentials", "true"})
	}
	if c.ExposeHeaders != "" {
		p.fields = append(p.fields, Edit{Set, "Access-Control-Expose-Headers", c.ExposeHeaders})
	}
	return p, p.any || len(p.origins) > 0
}

// gatewayRequest is Request with the Gateway API's semantics: the fields
// of an allowed Origin on every response (the Origin echoed), and a
// preflight answered 204 with what it may send (without any fields when
// its Origin is not allowed); another request whose Origin is not
// allowed, or that has none, goes on without CORS fields.
func (c cors) gatewayRequest(x *Exchange) {
	origin, n := x.In.Header("Origin")
	if n == 0 {
		return
	}
	method, m := x.In.Header("Access-Control-Request-Method")
	preflight := x.In.Method() == http.MethodOptions && m > 0
	if !fieldSafe(origin) || !c.any && !c.allowsWhole(origin) {
		if preflight {
			// The route's CORS is the Gateway's to answer: a preflight
			// of an origin not allowed gets no Access-Control-* fields,
			// which the browser takes as a refusal.
			x.Reply = Reply{Status: http.StatusNoContent, Reason: "CORS preflight of an origin not allowed"}
		}
		return
	}
	x.Resp.Set("Access-Control-Allow-Origin", origin)
	x.Resp.Add("Vary", "Origin")
	for _, f := range c.fields {
		x.Resp.add(f)
	}
	if !preflight {
		return
	}
	methods := c.methods
	if c.anyMethod && fieldSafe(method) {
		methods = method
	}
	x.Resp.Set("Access-Control-Allow-Methods", methods)
	headers := c.headers
	if asked, h := x.In.Header("Access-Control-Request-Headers"); c.anyHeader && h > 0 && fieldSafe(asked) {
		headers = asked
	}
	if headers != "" {
		x.Resp.Set("Access-Control-Allow-Headers", headers)
	}
	if c.maxAge > 0 {
		x.Resp.Set("Access-Control-Max-Age", strconv.Itoa(c.maxAge))
	}
	x.Reply = Reply{Status: http.StatusNoContent, Reason: "CORS preflight"}
}

// allowsWhole reports whether origin is one of the allowed origins, as a
// whole and without regard to case; a wildcard's '*' stands for one or
// more DNS labels.
func (c cors) allowsWhole(origin string) bool {
	for _, p := range c.origins {
		if !p.wild {
			if strings.EqualFold(origin, p.prefix) {
				return true
			}
			continue
		}
		if len(origin) <= len(p.prefix)+len(p.suffix) || !hasPrefixFold(origin, p.prefix) || !hasSuffixFold(origin, p.suffix) {
			continue
		}
		labels := origin[len(p.prefix) : len(origin)-len(p.suffix)]
		if validLabels(labels) {
			return true
		}
	}
	return false
}

// validLabels reports whether s is one or more DNS labels joined by dots.
func validLabels(s string) bool {
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isLabelByte(label[i]) {
				return false
			}
		}
	}
	return true
}
