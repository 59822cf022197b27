package pipeline

import (
	"net/http"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The route policies of ingress-nginx's redirect annotations, in the
// order they apply (reference §1.5): from-to-www-redirect (a server of
// its own, nothing else runs), app-root (server level, before every
// location), then permanent-redirect and temporal-redirect (`return` in
// the location). The redirect to HTTPS, and the answer of every
// redirect (redirectReply), are redirect.go's.

// hostRedirect is the route policy of from-to-www-redirect
// (route.HostRedirect): every request is answered with a redirect to the
// same URL on another host, as ingress-nginx's redirect server writes it:
// <scheme>://<host>:<port><request URI without one trailing slash>, the
// port always there, the one the client reached.
type hostRedirect struct {
	host string
	code int
}

// newHostRedirect returns the host redirect of rt, if it has one; a host
// that could not be a header field's has none.
func newHostRedirect(rt *route.Route) (hostRedirect, bool) {
	if rt.Policy == nil || rt.Policy.HostRedirect == nil {
		return hostRedirect{}, false
	}
	hr := rt.Policy.HostRedirect
	if hr.Host == "" || !fieldSafe(hr.Host) {
		return hostRedirect{}, false
	}
	code := hr.Code
	if code == 0 {
		code = http.StatusPermanentRedirect
	}
	return hostRedirect{host: hr.Host, code: code}, true
}

func (h hostRedirect) Request(x *Exchange) {
	port := hostPort(x.In.Host())
	if port == "" {
		port = "80"
		if x.Secure {
			port = "443"
		}
	}
	// ngx_srv_redirect.lua drops the last byte of $request_uri when it is
	// a '/', query or not.
	uri := strings.TrimSuffix(x.In.RequestURI(), "/")
	loc := x.scheme() + "://" + h.host + ":" + port + uri
	x.Reply = redirectReply(h.code, loc, "from-to-www redirect")
}

// hostPort returns the port of a Host field ("a.test:8080", "[::1]:80"),
// or "" when it has none or it is not a number.
func hostPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return ""
	}
	p := host[i+1:]
	if p == "" || len(p) > 5 {
		return ""
	}
	for j := 0; j < len(p); j++ {
		if p[j] < '0' || p[j] > '9' {
			return ""
		}
	}
	return p
}

// appRoot is the route policy of app-root: a request for "/" (the
// normalised path, nginx's `if ($uri = /)`) is answered 302 to
// $scheme://$http_host<path>, the Host as the client sent it, port
// included; the query is not kept.
type appRoot struct {
	path string
}

// newAppRoot returns the app-root policy of rt, if it has one; a path that
// could not be a header field's has none.
func newAppRoot(rt *route.Route) (appRoot, bool) {
	if rt.Policy == nil || rt.Policy.AppRoot == "" || !fieldSafe(rt.Policy.AppRoot) {
		return appRoot{}, false
	}
	return appRoot{path: rt.Policy.AppRoot}, true
}

func (a appRoot) Request(x *Exchange) {
	if route.CleanPath(x.In.Path()) != "/" {
		return
	}
	loc := a.path
	if h := x.In.Host(); h != "" {
		loc = x.scheme() + "://" + h + a.path
	}
	x.Reply = redirectReply(http.StatusFound, loc, "app-root")
}

// redirect is the route policy of permanent-redirect and
// temporal-redirect (route.Redirect), nginx's `return <code> <url>`: every
// request is answered code with the URL expanded as its Location, the
// request's path and query not appended. A URL that is a path gets the
// request's scheme and host in front (nginx's absolute_redirect, with
// port_in_redirect off as ingress-nginx sets it), unless relative.
type redirect struct {
	code     int
	url      *route.Template
	relative bool
	// fixed is the answer of a URL that is the same for every request: a
	// literal one that is not made absolute. Status 0: made per request.
	fixed Reply
}

// newRedirect returns the redirect of rt, if it has one.
func newRedirect(rt *route.Route) (redirect, bool) {
	if rt.Policy == nil || rt.Policy.Redirect == nil || rt.Policy.Redirect.URL == nil {
		return redirect{}, false
	}
	rd := rt.Policy.Redirect
	r := redirect{code: rd.Code, url: rd.URL, relative: rd.Relative}
	if r.code == 0 {
		r.code = http.StatusFound
	}
	if s, ok := rd.URL.Literal(); ok && (r.relative || !strings.HasPrefix(s, "/")) && fieldSafe(s) {
		r.fixed = redirectReply(r.code, s, "redirect")
	}
	return r, true
}

func (r redirect) Request(x *Exchange) {
	if r.fixed.Status != 0 {
		x.Reply = r.fixed
		return
	}
	b := make([]byte, 0, 128)
	origin := 0
	if !r.relative {
		if h := route.NormalizeHost(x.In.Host()); h != "" {
			b = append(append(append(b, x.scheme()...), "://"...), h...)
			origin = len(b)
		}
	}
	b = x.Expand(b, r.url, nil)
	loc := b
	if len(b) == origin || b[origin] != '/' {
		// Not a path (or nothing at all): sent as it expanded.
		loc = b[origin:]
	}
	s := string(loc)
	if !fieldSafe(s) {
		x.fail(http.StatusBadRequest, "redirect URL with a control character")
		return
	}
	x.Reply = redirectReply(r.code, s, "redirect")
}
