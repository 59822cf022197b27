package route

import (
	"cmp"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Match is what a request must have for a route to serve it: a path, and
// optionally a method, header fields and query parameters (the conditions).
type Match struct {
	// PathType is how Path is compared.
	PathType PathType `json:"pathType,omitempty"`
	// Path is the normalised path: Prefix paths carry no trailing slash
	// (except "/" itself).
	Path string `json:"path,omitempty"`
	// Method, when set, is the one request method served, compared as
	// sent (methods are case-sensitive).
	Method string `json:"method,omitempty"`
	// Headers must all match the request's header fields; names are
	// compared without regard to case, and the first field of a name is
	// the one compared.
	Headers []FieldMatch `json:"headers,omitempty"`
	// Query must all match the request's query parameters; names are
	// case-sensitive, and the first parameter of a name is the one
	// compared, its name and value unescaped.
	Query []FieldMatch `json:"query,omitempty"`

	pathRE *regexp.Regexp // a PathRegex path compiled; nil: never matches
}

// PathExpression returns the compiled expression of a PathRegex match in a
// table (nil otherwise, and for an expression that does not compile); its
// capture groups are what rewrite-target's $1..$9 refer to.
func (m *Match) PathExpression() *regexp.Regexp { return m.pathRE }

// CompilePath compiles the expression of a PathRegex path, as a table
// does: the controller calls it to tell a user that a path cannot be
// served (RE2 has no look-around and no backreferences).
func CompilePath(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(expr)
}

// MatchType says how a FieldMatch compares a value.
type MatchType string

// The ways a FieldMatch compares.
const (
	// MatchExact compares byte for byte; the zero value means it too.
	MatchExact MatchType = "Exact"
	// MatchRegularExpression matches when the value is matched in whole
	// by the expression (RE2 syntax, as Go's regexp has it).
	MatchRegularExpression MatchType = "RegularExpression"
)

// FieldMatch is a condition on one header field or query parameter: it
// must be present and its value must match.
type FieldMatch struct {
	// Name of the field or parameter.
	Name string `json:"name"`
	// Type is how Value is compared; empty means MatchExact.
	Type MatchType `json:"type,omitempty"`
	// Value is the value, or for MatchRegularExpression the expression.
	Value string `json:"value"`

	re *regexp.Regexp // compiled by NewVirtualHost; nil: never matches
}

// ExactField returns the condition that field name has value.
func ExactField(name, value string) FieldMatch {
	return FieldMatch{Name: name, Type: MatchExact, Value: value}
}

// RegexField returns the condition that field name has a value matched in
// whole by expr, or an error when expr is not a valid RE2 expression.
func RegexField(name, expr string) (FieldMatch, error) {
	re, err := compileWhole(expr)
	if err != nil {
		return FieldMatch{}, err
	}
	return FieldMatch{Name: name, Type: MatchRegularExpression, Value: expr, re: re}, nil
}

// compileWhole compiles expr so that it must match a whole value.
func compileWhole(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// matches reports whether v satisfies f.
func (f *FieldMatch) matches(v string) bool {
	if f.Type == MatchRegularExpression {
		return f.re != nil && f.re.MatchString(v)
	}
	return v == f.Value
}

// Request is what the conditions of a route read of a request. A nil
// Request has no method, header fields or query: only routes without
// conditions match it.
type Request interface {
	// Method is the request method as sent.
	Method() string
	// Header returns the first value of the fields named name (canonical
	// form) and how many there are.
	Header(name string) (value string, n int)
	// RawQuery is the query as sent, without the '?'.
	RawQuery() string
}

// Conditions is how many conditions m has besides its path.
func (m *Match) Conditions() int {
	n := len(m.Headers) + len(m.Query)
	if m.Method != "" {
		n++
	}
	return n
}

// compareConditions orders routes of one path by precedence, the Gateway
// API's: a method match first, then more header matches, then more query
// matches; equal ones keep the order they were given in.
func compareConditions(a, b *Route) int {
	if (a.Method != "") != (b.Method != "") {
		if a.Method != "" {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.Headers), len(a.Headers)); c != 0 {
		return c
	}
	return cmp.Compare(len(b.Query), len(a.Query))
}

// conditionsHold reports whether req satisfies m's method, header and
// query conditions. It does not allocate unless a query parameter is
// escaped.
func (m *Match) conditionsHold(req Request) bool {
	if m.Method == "" && len(m.Headers) == 0 && len(m.Query) == 0 {
		return true
	}
	if req == nil {
		return false
	}
	if m.Method != "" && req.Method() != m.Method {
		return false
	}
	for i := range m.Headers {
		h := &m.Headers[i]
		v, n := req.Header(h.Name)
		if n == 0 || !h.matches(v) {
			return false
		}
	}
	if len(m.Query) > 0 {
		q := req.RawQuery()
		for i := range m.Query {
			f := &m.Query[i]
			v, ok := queryParam(q, f.Name)
			if !ok || !f.matches(v) {
				return false
			}
		}
	}
	return true
}

// queryParam returns the value of the first parameter of rawQuery named
// name, unescaped, and whether there is one. Pairs are separated by '&';
// a pair without '=' has the empty value.
func queryParam(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if !escaped(k) {
				continue
			}
			uk, err := url.QueryUnescape(k)
			if err != nil || uk != name {
				continue
			}
		}
		if escaped(v) {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return "", false
			}
			v = uv
		}
		return v, true
	}
	return "", false
}

// escaped reports whether s has a '%' or '+' to unescape.
func escaped(s string) bool { return strings.ContainsAny(s, "%+") }

// compiled returns r ready for a table: a Prefix path normalised, header
// names canonical and expressions compiled. r is copied, not changed,
// when any of that changes something.
func (r *Route) compiled() *Route {
	norm := r.Path
	if r.PathType == PathPrefix {
		norm = NormalizePrefix(r.Path)
	}
	fix := norm != r.Path || (r.PathType == PathRegex && r.pathRE == nil)
	for _, f := range r.Headers {
		fix = fix || textproto.CanonicalMIMEHeaderKey(f.Name) != f.Name || (f.Type == MatchRegularExpression && f.re == nil)
	}
	for _, f := range r.Query {
		fix = fix || (f.Type == MatchRegularExpression && f.re == nil)
	}
	if !fix {
		return r
	}
	c := *r
	c.Path = norm
	if r.PathType == PathRegex && r.pathRE == nil {
		c.pathRE, _ = CompilePath(r.Path) // nil on error: never matches
	}
	c.Headers = compileFields(r.Headers, true)
	c.Query = compileFields(r.Query, false)
	return &c
}

// compileFields returns a copy of fs with expressions compiled and, for
// header fields, names canonical.
func compileFields(fs []FieldMatch, header bool) []FieldMatch {
	if fs == nil {
		return nil
	}
	out := make([]FieldMatch, len(fs))
	for i, f := range fs {
		if header {
			f.Name = textproto.CanonicalMIMEHeaderKey(f.Name)
		}
		if f.Type == MatchRegularExpression && f.re == nil {
			f.re, _ = compileWhole(f.Value) // nil on error: never matches
		}
		out[i] = f
	}
	return out
}

// Key is what two routes of one virtual host must not share: the path,
// its type and the conditions (header names in canonical form). The
// controller keys its route claims by it.
func (m *Match) Key() string {
	if m.Conditions() == 0 {
		return string(m.PathType) + " " + m.Path
	}
	var b strings.Builder
	b.WriteString(string(m.PathType) + " " + m.Path + " " + m.Method)
	for _, fs := range [][]FieldMatch{m.Headers, m.Query} {
		b.WriteString(" |")
		for _, f := range fs {
			b.WriteString(" " + strconv.Quote(f.Name) + string(f.Type) + strconv.Quote(f.Value))
		}
	}
	return b.String()
}

// Match returns the route of vh that serves a request for reqPath, or
// nil. An Exact route wins whenever it matches, since no matching Prefix
// route can be longer; otherwise the longest Prefix route whose path is
// reqPath or an '/'-separated leading part of it wins; otherwise the first
// Regex route whose expression matches. Among routes of one
// path the first in precedence order whose conditions req satisfies wins;
// when none does, shorter paths are tried. reqPath must start with '/'.
// Match does not allocate unless a query parameter is escaped.
func (vh *VirtualHost) Match(reqPath string, req Request) *Route {
	if reqPath == "" || reqPath[0] != '/' {
		return nil
	}
	if len(vh.exact) > 0 {
		if r := firstHolding(vh.exact[reqPath], req); r != nil {
			return r
		}
	}
	if r := vh.matchPrefix(reqPath, req); r != nil {
		return r
	}
	for _, r := range vh.regex {
		if r.pathRE != nil && r.pathRE.MatchString(reqPath) && r.conditionsHold(req) {
			return r
		}
	}
	return nil
}

// matchPrefix returns the longest Prefix route of vh for reqPath whose
// conditions req satisfies, or nil.
func (vh *VirtualHost) matchPrefix(reqPath string, req Request) *Route {
	if len(vh.prefix) == 0 {
		return nil
	}
	p := reqPath
	for {
		p = NormalizePrefix(p)
		if r := firstHolding(vh.prefix[p], req); r != nil {
			return r
		}
		if p == "/" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i == 0 {
			p = "/"
			continue
		}
		p = p[:i]
	}
}

// firstHolding returns the first route of set whose conditions req
// satisfies, or nil.
func firstHolding(set []*Route, req Request) *Route {
	for _, r := range set {
		if r.conditionsHold(req) {
			return r
		}
	}
	return nil
}
