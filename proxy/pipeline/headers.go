package pipeline

import (
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// headerEdits is the route policy of route.Policy's RequestHeaders and
// ResponseHeaders: the edits go into x.Req and x.Resp in their order,
// after the listener's own (X-Forwarded-*, X-Request-Id), which a Set of
// the same name therefore replaces. It runs first among the route's
// policies so that its response edits reach the route's own answers too,
// as nginx's more_set_headers reaches every response.
type headerEdits struct {
	req, resp route.HeaderEdits
}

// newHeaderEdits returns the header edits of rt, if it has any.
func newHeaderEdits(rt *route.Route) (headerEdits, bool) {
	if rt.Policy == nil {
		return headerEdits{}, false
	}
	var h headerEdits
	if e := rt.Policy.RequestHeaders; e != nil {
		h.req = *e
	}
	if e := rt.Policy.ResponseHeaders; e != nil {
		h.resp = *e
	}
	return h, len(h.req)+len(h.resp) > 0
}

func (h headerEdits) Request(x *Exchange) {
	applyHeaderEdits(x, &x.Req, h.req)
	applyHeaderEdits(x, &x.Resp, h.resp)
}

// applyHeaderEdits makes the edits in es, their values expanded for x; a
// value whose variables bring in a control character is left out.
func applyHeaderEdits(x *Exchange, to *Edits, es route.HeaderEdits) {
	for _, e := range es {
		if e.Op == route.HeaderRemove {
			to.Del(e.Name)
			continue
		}
		v, ok := x.ExpandField(e.Value, nil)
		if !ok {
			continue
		}
		if e.Op == route.HeaderAdd {
			to.Add(e.Name, v)
		} else {
			to.Set(e.Name, v)
		}
	}
}

// respRewrite is the route policy of route.Policy.ResponseRewrite: it
// hands the rewrite to the engine, which applies it to the fields of the
// endpoint's response head (RewriteResponseField).
type respRewrite struct{ rw *route.ResponseRewrite }

func (r respRewrite) Request(x *Exchange) { x.RespRewrite = r.rw }

// RewriteResponseField returns the value of the field name (any case) of
// an endpoint's response rewritten by rw, and whether it changed:
// Location and Refresh by proxy_redirect's rule, Set-Cookie by
// proxy_cookie_domain's and proxy_cookie_path's. The engines call it for
// those three names only.
func RewriteResponseField(rw *route.ResponseRewrite, name, value string) (string, bool) {
	switch {
	case strings.EqualFold(name, "Location"):
		return rewritePrefix(value, 0, rw.RedirectFrom, rw.RedirectTo)
	case strings.EqualFold(name, "Refresh"):
		// "5; url=http://..." (nginx looks for "url=" in any case).
		i := indexFold(value, "url=")
		if i < 0 {
			return value, false
		}
		return rewritePrefix(value, i+len("url="), rw.RedirectFrom, rw.RedirectTo)
	case strings.EqualFold(name, "Set-Cookie"):
		return rewriteCookie(rw, value)
	}
	return value, false
}

// IsRewrittenResponseField reports whether RewriteResponseField may change
// a field of this name.
func IsRewrittenResponseField(name string) bool {
	return strings.EqualFold(name, "Location") || strings.EqualFold(name, "Refresh") || strings.EqualFold(name, "Set-Cookie")
}

// rewritePrefix replaces from, when v has it at offset at, with to.
func rewritePrefix(v string, at int, from, to string) (string, bool) {
	if from == "" || !strings.HasPrefix(v[at:], from) {
		return v, false
	}
	return v[:at] + to + v[at+len(from):], true
}

// rewriteCookie rewrites the Domain and then the Path attribute of a
// Set-Cookie value, where nginx finds them: the first "domain=" and
// "path=" (any case) after the first ';', each value running to the next
// ';'.
func rewriteCookie(rw *route.ResponseRewrite, v string) (string, bool) {
	semi := strings.IndexByte(v, ';')
	if semi < 0 {
		return v, false
	}
	changed := false
	if rw.CookieDomainFrom != "" {
		if i := indexFold(v[semi+1:], "domain="); i >= 0 {
			start := semi + 1 + i + len("domain=")
			end := attrEnd(v, start)
			dom := v[start:end]
			if strings.HasPrefix(dom, ".") {
				start++
				dom = dom[1:]
			}
			if strings.EqualFold(dom, rw.CookieDomainFrom) {
				v, changed = v[:start]+rw.CookieDomainTo+v[end:], true
			}
		}
	}
	if rw.CookiePathFrom != "" {
		if i := indexFold(v[semi+1:], "path="); i >= 0 {
			start := semi + 1 + i + len("path=")
			end := attrEnd(v, start)
			if strings.HasPrefix(v[start:end], rw.CookiePathFrom) {
				v, changed = v[:start]+rw.CookiePathTo+v[start+len(rw.CookiePathFrom):], true
			}
		}
	}
	return v, changed
}

// attrEnd returns where the attribute value of v starting at start ends:
// the next ';', or the end of v.
func attrEnd(v string, start int) int {
	if j := strings.IndexByte(v[start:], ';'); j >= 0 {
		return start + j
	}
	return len(v)
}

// indexFold returns the index of the first instance of the lower-case
// ASCII sub in s, compared without regard to case, or -1.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
