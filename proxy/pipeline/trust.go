package pipeline

import (
	"fmt"
	"net/netip"
	"strings"
)

// TrustedProxies is the set of networks whose forwarding headers Postern
// believes: X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP
// and Forwarded sent by a peer in the set are passed on (X-Forwarded-For
// appended to), and the real client is found in them. From any other peer
// they are replaced or removed, so a client cannot make a backend believe
// it came from elsewhere. The peer is the connection's remote address, or
// with the PROXY protocol the source address the header carries.
//
// A nil or empty set trusts no one.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies parses networks in CIDR notation ("10.0.0.0/8",
// "2001:db8::/32") and single addresses ("192.0.2.7"). IPv4-mapped IPv6
// forms are treated as the IPv4 ones they map. Empty items are skipped.
func ParseTrustedProxies(items []string) (*TrustedProxies, error) {
	t := &TrustedProxies{}
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("trusted proxy %q: zones are not allowed", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether addr is in one of the networks.
func (t *TrustedProxies) Contains(addr netip.Addr) bool {
	if t == nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String returns the networks, comma-separated.
func (t *TrustedProxies) String() string {
	if t == nil {
		return ""
	}
	s := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Empty reports whether the set trusts no one.
func (t *TrustedProxies) Empty() bool { return t == nil || len(t.prefixes) == 0 }

// realClient finds the client behind a trusted peer, as nginx's realip
// module with real_ip_recursive does: it walks X-Forwarded-For from the
// right, skipping trusted addresses, and returns the first untrusted one;
// when every address is trusted, the leftmost. An entry that is not an
// address ends the walk at the trusted address to its right, so a
// malformed header never puts text of the client's choosing in X-Real-IP.
// Without X-Forwarded-For (xff, its values in order), a valid X-Real-IP
// from the trusted peer is kept. peer is the trusted peer's address.
func realClient(t *TrustedProxies, xff []string, in Head, peer netip.Addr) string {
	if len(xff) == 0 {
		if v, n := in.Header("X-Real-Ip"); n == 1 {
			if a, ok := forwardedAddr(strings.TrimSpace(v)); ok {
				return a.String()
			}
		}
		return peer.String()
	}
	last := peer
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			item := v
			v = ""
			if j := strings.LastIndexByte(item, ','); j >= 0 {
				item, v = item[j+1:], item[:j]
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, ok := forwardedAddr(item)
			if !ok {
				return last.String()
			}
			if !t.Contains(a) {
				return a.String()
			}
			last = a
		}
	}
	return last.String()
}

// forwardedAddr parses one X-Forwarded-For or X-Real-IP entry: an address,
// or an address and port ("192.0.2.1:80", "[2001:db8::1]:80"). It returns
// the address alone, IPv4-mapped addresses as IPv4; zones are refused.
func forwardedAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
