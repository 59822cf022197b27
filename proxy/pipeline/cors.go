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
