package route

// AffinityMode is how a sticky session's cookie maps to an endpoint.
type AffinityMode string

// The affinity modes of ingress-nginx's affinity-mode.
const (
	// AffinityBalanced, the default: the cookie holds a random key that a
	// consistent hash maps to an endpoint, so that when endpoints are
	// added only some sessions move.
	AffinityBalanced AffinityMode = "balanced"
	// AffinityPersistent: the cookie names its endpoint, which keeps the
	// session for as long as it exists.
	AffinityPersistent AffinityMode = "persistent"
)

// Affinity is cookie session affinity (ingress-nginx's affinity: cookie
// and session-cookie-*): a request without a valid cookie is sent where
// the balancer says and gets a cookie that brings the client's next
// requests back to the same endpoint. The cookie is HttpOnly, Secure on
// HTTPS, and also names the backend, so that a client sticks to a canary
// it was sent to.
type Affinity struct {
	Mode AffinityMode `json:"mode"`
	// CookieName is the cookie's name; never empty in a table.
	CookieName string `json:"cookieName"`
	// CookiePath is the cookie's Path; never empty in a table (the
	// controller puts the Ingress path there when it is not set).
	CookiePath string `json:"cookiePath"`
	// CookieDomain is the Domain attribute; empty: none.
	CookieDomain string `json:"cookieDomain,omitempty"`
	// MaxAge and Expires (seconds) make the cookie outlive the browser
	// session; zero: not sent.
	MaxAge  int `json:"maxAge,omitempty"`
	Expires int `json:"expires,omitempty"`
	// Secure sends Secure over plain HTTP too (over HTTPS it is always
	// sent).
	Secure bool `json:"secure,omitempty"`
	// SameSite is "None", "Lax" or "Strict"; empty: not sent.
	SameSite string `json:"sameSite,omitempty"`
	// ConditionalSameSiteNone leaves SameSite=None out for the browsers
	// that reject cookies with it.
	ConditionalSameSiteNone bool `json:"conditionalSameSiteNone,omitempty"`
	// ChangeOnFailure moves the session to another endpoint, with a new
	// cookie, when its endpoint fails a request.
	ChangeOnFailure bool `json:"changeOnFailure,omitempty"`
	// CanaryLegacy ignores the cookie for the canary choice
	// (affinity-canary-behavior: legacy); by default a client sent to a
	// route's canary stays with it.
	CanaryLegacy bool `json:"canaryLegacy,omitempty"`
}
