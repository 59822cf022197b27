package route

import "net/netip"

// RateLimit limits the requests of each client address (after trusted
// proxies and the PROXY protocol), as ingress-nginx's limit-rps,
// limit-rpm and limit-connections do: the routes of one Zone (one
// Ingress) share the counts, each replica of the proxy counts alone.
type RateLimit struct {
	// Zone names the counts: routes with the same Zone and limits share
	// them. The controller uses the Ingress's namespace, name and UID.
	Zone string `json:"zone"`
	// RPS and RPM are the requests a client may make per second and per
	// minute (zero: no limit), as nginx's limit_req with nodelay: a burst
	// of Burst × the rate is let through at once, then requests beyond
	// the rate are refused.
	RPS int `json:"rps,omitempty"`
	RPM int `json:"rpm,omitempty"`
	// Burst is the burst multiplier (limit-burst-multiplier); zero is 5.
	Burst int `json:"burst,omitempty"`
	// Connections is how many requests of a client may be in progress at
	// once (zero: no limit).
	Connections int `json:"connections,omitempty"`
	// Exempt are the client addresses no limit applies to
	// (limit-allowlist).
	Exempt []netip.Prefix `json:"exempt,omitempty"`
	// Status is the answer to a refused request; zero is 503, as
	// ingress-nginx's limit-req-status-code and limit-conn-status-code.
	Status int `json:"status,omitempty"`
}

// DefaultBurst is ingress-nginx's limit-burst-multiplier default.
const DefaultBurst = 5
