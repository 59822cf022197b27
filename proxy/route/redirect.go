package route

// Redirect is what ingress-nginx's permanent-redirect and
// temporal-redirect do to the requests of a route, nginx's
// `return <code> <url>`: every request is answered Code with Location
// set to URL, expanded for the request and otherwise verbatim (the
// request's path and query are not appended). A URL that is a path
// ("/new-location") is made absolute with the request's scheme and host,
// without a port (nginx's absolute_redirect with port_in_redirect off,
// ingress-nginx's default), unless Relative. Nothing is forwarded.
type Redirect struct {
	// Code is the status sent (the controller applies ingress-nginx's
	// rules: 301 or the permanent-redirect-code, 302 or the
	// temporal-redirect-code); zero means 302, as nginx's `return <url>`.
	Code int `json:"code,omitempty"`
	// URL is the Location, nginx variables allowed; never nil in a table.
	URL *Template `json:"url"`
	// Relative keeps a URL that is a path as it is (relative-redirects,
	// nginx's absolute_redirect off); false makes it absolute.
	Relative bool `json:"relative,omitempty"`
}

// HostRedirect is the policy of the routes the controller makes for the
// counterpart of a host with from-to-www-redirect (www.H for H, or H for
// www.H): every request is answered Code with Location
// <scheme>://<Host>:<port><request URI without one trailing slash>, the
// port always given, the one the client reached (the Host field's, else
// 80 or 443 by scheme), as ingress-nginx's redirect server does. Nothing
// else of the route applies; its backends are never used.
type HostRedirect struct {
	// Host is the host redirected to; never empty in a table.
	Host string `json:"host"`
	// Code is the status sent; zero means 308 (ingress-nginx's
	// http-redirect-code default).
	Code int `json:"code,omitempty"`
}

// SSLRedirect says whether plain HTTP requests of a route are redirected
// to HTTPS (ssl-redirect, force-ssl-redirect). The redirect is 308 to
// https://<host>[:port]<request URI>, made on the plain listener after the
// route's other redirects and rewrite and before its access checks.
type SSLRedirect string

// The SSL redirect settings of a route.
const (
	// SSLRedirectDefault, the zero value, leaves it to the host: a host
	// of spec.tls whose TLSHost.Redirect is on is redirected.
	SSLRedirectDefault SSLRedirect = ""
	// SSLRedirectOff never redirects the route's requests
	// (ssl-redirect: "false"), whatever the host's setting.
	SSLRedirectOff SSLRedirect = "off"
	// SSLRedirectForce redirects the route's requests even when the host
	// has no TLS configuration (force-ssl-redirect: TLS terminated in
	// front of the proxy).
	SSLRedirectForce SSLRedirect = "force"
)
