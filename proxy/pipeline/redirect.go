package pipeline

import (
	"net/http"
	"strconv"

	"github.com/postern-dev/postern/proxy/route"
)

// httpsRedirect is the redirect to HTTPS of a plain listener: 308
// Permanent Redirect to the same URL over HTTPS (308 keeps the method and
// body, RFC 9110 §15.4.9). The listener hands it to its requests
// (Exchange.https); the route step sslRedirect decides which are
// redirected. A TLS listener has none.
type httpsRedirect struct {
	port string // ":8443", or "" for 443
}

// newHTTPSRedirect returns the redirect for HTTPS on httpsPort, the port
// clients reach it on (the Service's, usually 443, not the container's);
// 443 is left out of the Location.
func newHTTPSRedirect(httpsPort int) *httpsRedirect {
	if httpsPort > 0 && httpsPort != 443 {
		return &httpsRedirect{port: ":" + strconv.Itoa(httpsPort)}
	}
	return &httpsRedirect{}
}

// answer answers x with the redirect to https://<host>[:port]<request
// URI>: the host lower case and without its port, the request URI as sent,
// trailing slash kept (ingress-nginx strips it unless
// preserve-trailing-slash; Postern keeps the URL the client asked for).
func (r *httpsRedirect) answer(x *Exchange) {
	loc := "https://" + route.NormalizeHost(x.In.Host()) + r.port + x.In.RequestURI()
	x.Reply = redirectReply(http.StatusPermanentRedirect, loc, "redirect to HTTPS")
}

// sslRedirect is the route step of ssl-redirect and force-ssl-redirect
// (route.SSLRedirect): on a plain listener, a request is redirected to
// HTTPS when its route forces it, or, unless its route turns it off, when
// its host is named in spec.tls with the redirect on. It runs where
// ingress-nginx's rewrite_by_lua does (reference §1.5): after the route's
// other redirects and its rewrite, before its limits and access checks.
// A request no route matches gets the host's redirect before the 404
// (hostDefaults). A request a trusted proxy says came over HTTPS is not
// redirected: TLS ended in front of the proxy (what force-ssl-redirect
// is for), and redirecting it would loop, as ingress-nginx's
// use-forwarded-headers has it.
//
// ACME http-01 challenges of ACME hosts are answered by the listener
// before the route lookup, so no setting redirects them.
type sslRedirect struct {
	mode route.SSLRedirect
}

// newSSLRedirect returns the SSL redirect step of rt.
func newSSLRedirect(rt *route.Route) sslRedirect {
	if rt.Policy == nil {
		return sslRedirect{}
	}
	return sslRedirect{mode: rt.Policy.SSLRedirect}
}

func (s sslRedirect) Request(x *Exchange) {
	if x.https == nil || x.viaHTTPS || s.mode == route.SSLRedirectOff {
		return
	}
	if s.mode != route.SSLRedirectForce {
		if th := x.table.TLSHost(x.In.Host()); th == nil || !th.Redirect {
			return
		}
	}
	x.https.answer(x)
}

// hostDefaults are the route policies of a route that has none of its
// own, and those of a request no route matches: the host's redirect to
// HTTPS.
var hostDefaults = []Policy{sslRedirect{}}

// redirectReply returns the answer code with Location loc, shaped like
// the proxy's other local answers: a short plain text body (none for
// 304, which has none, RFC 9110 §15.4.5).
func redirectReply(code int, loc, reason string) Reply {
	r := Reply{
		Status: code,
		Fields: []Edit{errorFields[0], errorFields[1], {Op: Set, Name: "Location", Value: loc}},
		Reason: reason,
	}
	if body, ok := redirectBodies[code]; ok {
		r.Body = body
	} else if code != http.StatusNotModified {
		r.Body = ErrorBody(code)
	}
	return r
}

// redirectBodies are the bodies of the usual redirects, made once: a
// redirect costs no allocation for its body.
var redirectBodies = func() map[int]string {
	m := make(map[int]string)
	for _, code := range []int{301, 302, 303, 307, 308} {
		m[code] = ErrorBody(code)
	}
	return m
}()
