package pipeline

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// rewrite is the route policy of rewrite-target (route.Rewrite), as
// ingress-nginx renders it, `rewrite "(?i)<path>" <target> break;`: the
// route's path expression is matched against the request's normalised,
// decoded path for its capture groups, the whole URI is replaced by the
// expanded target and the query is kept (appended after a '?', or after
// '&' when the target has a query of its own; a target ending in '?'
// drops it, as in nginx). An absolute target answers 302 to it.
type rewrite struct {
	re     *regexp.Regexp // the route's path expression; nil: no groups
	target *route.Template
	prefix string // X-Forwarded-Prefix, or ""
}

// newRewrite returns the rewrite of rt, if it has one.
func newRewrite(rt *route.Route) (rewrite, bool) {
	if rt.Policy == nil || rt.Policy.Rewrite == nil || rt.Policy.Rewrite.Target == nil {
		return rewrite{}, false
	}
	rw := rt.Policy.Rewrite
	return rewrite{re: rt.PathExpression(), target: rw.Target, prefix: rw.ForwardedPrefix}, true
}

func (r rewrite) Request(x *Exchange) {
	var groups []string
	if r.re != nil && r.target.MaxGroup() > 0 {
		groups = r.re.FindStringSubmatch(route.CleanPath(x.In.Path()))
	}
	out := x.Expand(make([]byte, 0, 128), r.target, groups)
	target, dropQuery := string(out), false
	if t, ok := strings.CutSuffix(target, "?"); ok {
		target, dropQuery = t, true
	}
	if isAbsoluteURL(target) {
		if !fieldSafe(target) {
			x.fail(http.StatusBadRequest, "rewrite target with a control character")
			return
		}
		x.Reply = Reply{
			Status: http.StatusFound,
			Fields: []Edit{{Op: Set, Name: "Location", Value: withQuery(target, x.In.RawQuery(), dropQuery)}},
			Reason: "rewrite to an absolute URL",
		}
		return
	}
	path, query, hasQuery := strings.Cut(target, "?")
	uri := escapePath(path)
	if hasQuery {
		uri += "?" + escapeQuery(query)
	}
	x.Target = withQuery(uri, x.In.RawQuery(), dropQuery)
	if r.prefix != "" {
		x.Req.Set("X-Forwarded-Prefix", r.prefix)
	}
}

// withQuery appends the request's query to uri as nginx's rewrite does.
func withQuery(uri, rawQuery string, drop bool) string {
	switch {
	case drop || rawQuery == "":
		return uri
	case strings.Contains(uri, "?"):
		return uri + "&" + rawQuery
	}
	return uri + "?" + rawQuery
}

// isAbsoluteURL reports whether s starts with http:// or https://, the
// targets nginx's rewrite turns into a redirect.
func isAbsoluteURL(s string) bool {
	return hasPrefixFold(s, "http://") || hasPrefixFold(s, "https://")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// escapePath escapes a decoded path for a request target: every byte but
// the unreserved and sub-delimiting ones, ':', '@' and '/' (RFC 3986
// §3.3) is percent-encoded, '%' included, since the path is decoded. The
// path comes back as it is when nothing needs escaping.
func escapePath(p string) string {
	n := 0
	for i := 0; i < len(p); i++ {
		if !pathByte(p[i]) {
			n++
		}
	}
	if n == 0 {
		if p == "" {
			return "/"
		}
		return p
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(p)+2*n)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if pathByte(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// pathByte reports whether c may stand for itself in a path.
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

// upstreamHost is the route policy of upstream-vhost: the Host sent to
// the endpoints, expanded for each request.
type upstreamHost struct {
	host *route.Template
}

func (u upstreamHost) Request(x *Exchange) {
	h, ok := x.ExpandField(u.host, nil)
	if !ok {
		x.fail(http.StatusBadRequest, "upstream-vhost with a control character")
		return
	}
	if h != "" {
		x.UpstreamHost = h
	}
}

// fieldSafe reports whether s may be a header field value.
func fieldSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// escapeQuery escapes what may not stand in a request target's query:
// controls, space, '#', '"', '<', '>' and bytes past ASCII; the rest,
// '%' included, is kept as the target wrote it.
func escapeQuery(q string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c > 0x20 && c < 0x7f && strings.IndexByte("#\"<>", c) < 0 {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(q)+8), q[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return q
	}
	return string(b)
}
