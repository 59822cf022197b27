package route

import "net/netip"

// SourceRanges decide which client addresses (after trusted proxies and
// the PROXY protocol) a route serves, as ingress-nginx's
// denylist-source-range and allowlist-source-range: an address Deny
// covers, or one Allow does not when Allow is not empty, is answered 403.
// Deny is checked first.
type SourceRanges struct {
	Allow []netip.Prefix `json:"allow,omitempty"`
	Deny  []netip.Prefix `json:"deny,omitempty"`
}
