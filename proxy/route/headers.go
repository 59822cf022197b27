package route

// HeaderOp is what a HeaderEdit does to the fields of its name.
type HeaderOp string

// The header edits.
const (
	// HeaderSet replaces every field of the name with one of the value.
	HeaderSet HeaderOp = "set"
	// HeaderAdd appends a field after those of the name already there.
	HeaderAdd HeaderOp = "add"
	// HeaderRemove removes every field of the name.
	HeaderRemove HeaderOp = "remove"
)

// HeaderEdit is one change to the request head sent to the endpoints or
// to the response head sent to the client (postern.dev/request-headers
// and postern.dev/response-headers, what ingress-nginx users wrote
// proxy_set_header and more_set_headers snippets for; the Gateway API's
// header modifier filters).
type HeaderEdit struct {
	Op HeaderOp `json:"op"`
	// Name is in canonical form (http.CanonicalHeaderKey); never a field
	// that frames the message or belongs to one hop (Connection,
	// Content-Length, Transfer-Encoding, Host...): the controller refuses
	// those.
	Name string `json:"name"`
	// Value, nginx variables allowed; nil for HeaderRemove.
	Value *Template `json:"value,omitempty"`
}

// HeaderEdits are edits applied in order.
type HeaderEdits []HeaderEdit

// ResponseRewrite rewrites fields of the responses the endpoints send, as
// nginx's proxy_redirect (ingress-nginx's proxy-redirect-from/-to) and
// proxy_cookie_path/proxy_cookie_domain (proxy-cookie-path/-domain) do.
// Each pair is off when its From is empty. Postern's own answers are never
// rewritten.
type ResponseRewrite struct {
	// RedirectFrom, when a Location value (or a Refresh value's URL)
	// starts with it, case-sensitively, is replaced by RedirectTo.
	RedirectFrom string `json:"redirectFrom,omitempty"`
	RedirectTo   string `json:"redirectTo,omitempty"`
	// CookiePathFrom, when a Set-Cookie's Path attribute starts with it,
	// case-sensitively, is replaced by CookiePathTo.
	CookiePathFrom string `json:"cookiePathFrom,omitempty"`
	CookiePathTo   string `json:"cookiePathTo,omitempty"`
	// CookieDomainFrom, when it is a Set-Cookie's whole Domain attribute
	// (without regard to case, a leading dot aside), is replaced by
	// CookieDomainTo.
	CookieDomainFrom string `json:"cookieDomainFrom,omitempty"`
	CookieDomainTo   string `json:"cookieDomainTo,omitempty"`
}
