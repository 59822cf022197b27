package pipeline

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// urlRedirect is the route policy of the Gateway API's RequestRedirect
// filter (route.URLRedirect): the request's URL with the filter's parts
// replaced, answered with the filter's code.
type urlRedirect struct {
	rd *route.URLRedirect
}

// newURLRedirect returns the redirect of rt, if it has one.
func newURLRedirect(rt *route.Route) (urlRedirect, bool) {
	if rt.Policy == nil || rt.Policy.URLRedirect == nil {
		return urlRedirect{}, false
	}
	return urlRedirect{rd: rt.Policy.URLRedirect}, true
}

func (r urlRedirect) Request(x *Exchange) {
	rd := r.rd
	scheme := x.scheme()
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host := rd.Host
	if host == "" {
		host = route.NormalizeHost(x.In.Host())
	}
	port := rd.Port
	switch {
	case port != 0:
	case rd.Scheme == "http":
		port = 80
	case rd.Scheme == "https":
		port = 443
	default:
		port = x.ListenerPort
	}
	var b strings.Builder
	b.Grow(len(scheme) + len(host) + len(x.In.RequestURI()) + 16)
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // an IPv6 literal
	}
	b.WriteString(host)
	if defaultPort := (scheme == "http" && port == 80) || (scheme == "https" && port == 443); port != 0 && !defaultPort {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	if rd.Path != nil {
		b.WriteString(escapePath(rd.Path.Apply(route.CleanPath(x.In.Path()))))
		if q := x.In.RawQuery(); q != "" {
			b.WriteByte('?')
			b.WriteString(q)
		}
	} else {
		b.WriteString(x.In.RequestURI())
	}
	code := rd.Code
	if code == 0 {
		code = http.StatusFound
	}
	loc := b.String()
	if !fieldSafe(loc) {
		x.fail(http.StatusBadRequest, "redirect with a control character")
		return
	}
	x.Reply = redirectReply(code, loc, "request redirect")
}

// urlRewrite is the route policy of the Gateway API's URLRewrite filter
// (route.URLRewrite): the Host and path sent to the endpoints.
type urlRewrite struct {
	rw *route.URLRewrite
}

// newURLRewrite returns the rewrite of rt, if it has one.
func newURLRewrite(rt *route.Route) (urlRewrite, bool) {
	if rt.Policy == nil || rt.Policy.URLRewrite == nil {
		return urlRewrite{}, false
	}
	return urlRewrite{rw: rt.Policy.URLRewrite}, true
}

func (r urlRewrite) Request(x *Exchange) {
	if r.rw.Host != "" {
		x.UpstreamHost = r.rw.Host
	}
	if r.rw.Path != nil {
		uri := escapePath(r.rw.Path.Apply(route.CleanPath(x.In.Path())))
		if q := x.In.RawQuery(); q != "" {
			uri += "?" + q
		}
		x.Target = uri
	}
}
