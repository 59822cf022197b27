package route

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
