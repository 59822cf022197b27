package route

// CORS is Cross-Origin Resource Sharing for a route (ingress-nginx's
// enable-cors and cors-*): the Access-Control-* fields go on every
// response of a request whose Origin is allowed, and a preflight (an
// OPTIONS request whose Origin is allowed) is answered 204 by the proxy,
// before redirects, limits and access checks.
type CORS struct {
	// AllowOrigins are the origins allowed: "scheme://host[:port]",
	// "scheme://*.host[:port]" (the '*' one DNS label) or "null",
	// compared without regard to case; an Origin matches when it ends
	// with one of them (ingress-nginx's regex is anchored at the end
	// only). AnyOrigin instead allows every request, Origin or not.
	// Neither: no request gets CORS fields.
	AllowOrigins []string `json:"allowOrigins,omitempty"`
	// AnyOrigin sends "Access-Control-Allow-Origin: *" on every response
	// and answers every OPTIONS request.
	AnyOrigin bool `json:"anyOrigin,omitempty"`
	// AllowMethods, AllowHeaders and ExposeHeaders are sent as written;
	// an empty ExposeHeaders is left out.
	AllowMethods  string `json:"allowMethods"`
	AllowHeaders  string `json:"allowHeaders"`
	ExposeHeaders string `json:"exposeHeaders,omitempty"`
	// AllowCredentials sends "Access-Control-Allow-Credentials: true"
	// (also beside an origin of "*", as ingress-nginx does).
	AllowCredentials bool `json:"allowCredentials,omitempty"`
	// MaxAge is Access-Control-Max-Age, in seconds.
	MaxAge int `json:"maxAge"`
	// Gateway selects the Gateway API's semantics (an HTTPRoute's CORS
	// filter) instead of ingress-nginx's: an Origin matches an allowed
	// origin as a whole, where a '*' host label stands for one or more
	// labels and "*" alone for any origin; Access-Control-Allow-Origin
	// echoes the request's Origin; an AllowMethods or AllowHeaders of
	// "*" echoes what the preflight asks for; only an OPTIONS request
	// with Access-Control-Request-Method is a preflight; a request
	// without an Origin gets no CORS fields. AnyOrigin is not used.
	Gateway bool `json:"gateway,omitempty"`
}
