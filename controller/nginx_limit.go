package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's client address rules (reference §2.5):
// the rate limits (limit-rps, limit-rpm and limit-connections per client
// address, limit-burst-multiplier, limit-allowlist) and the source ranges
// (allowlist-source-range, denylist-source-range). The counts are the
// Ingress's (one zone for all its hosts and paths, named after its UID, as
// ingress-nginx's), per replica. An invalid limit or range refuses the
// Ingress: served without it, it would be open to what the rule keeps out.

// rateLimit returns the limits being read, made on first use.
func (n *nginxRead) rateLimit() *route.RateLimit {
	if n.cfg.policy.RateLimit == nil {
		n.cfg.policy.RateLimit = &route.RateLimit{}
	}
	return n.cfg.policy.RateLimit
}

// parseLimit parses a limit: a whole number, 0 meaning none.
func parseLimit(v string) (int, error) {
	l, err := strconv.Atoi(v)
	if err != nil || l < 0 {
		return 0, errors.New("want a whole number (0: no limit)")
	}
	return l, nil
}

// readLimit returns the reader of a limit set by set.
func readLimit(set func(*route.RateLimit, int)) func(string, *nginxRead) error {
	return func(v string, n *nginxRead) error {
		l, err := parseLimit(v)
		if err != nil || l == 0 {
			return err
		}
		set(n.rateLimit(), l)
		return nil
	}
}

var (
	readLimitRPS         = readLimit(func(rl *route.RateLimit, l int) { rl.RPS = l })
	readLimitRPM         = readLimit(func(rl *route.RateLimit, l int) { rl.RPM = l })
	readLimitConnections = readLimit(func(rl *route.RateLimit, l int) { rl.Connections = l })
)

func readLimitBurst(v string, n *nginxRead) error {
	m, err := strconv.Atoi(v)
	if err != nil || m < 1 {
		return errors.New("want a whole number from 1")
	}
	if m != route.DefaultBurst {
		n.rateLimit().Burst = m
	}
	return nil
}

// readPrefixes returns the reader of a comma list of addresses and CIDRs
// (spaces allowed) set by set.
func readPrefixes(set func(n *nginxRead, ps []netip.Prefix)) func(string, *nginxRead) error {
	return func(v string, n *nginxRead) error {
		ps, err := parsePrefixList(v)
		if err != nil {
			return err
		}
		set(n, ps)
		return nil
	}
}

var (
	// readLimitAllowlist reads the addresses exempt from the limits.
	readLimitAllowlist = readPrefixes(func(n *nginxRead, ps []netip.Prefix) { n.rateLimit().Exempt = ps })
	// readAllowlist and readDenylist read allowlist-source-range
	// (whitelist-source-range) and denylist-source-range.
	readAllowlist = readPrefixes(func(n *nginxRead, ps []netip.Prefix) { n.sourceRanges().Allow = ps })
	readDenylist  = readPrefixes(func(n *nginxRead, ps []netip.Prefix) { n.sourceRanges().Deny = ps })
)

// parsePrefixList parses a comma list of CIDRs and addresses, as
// ingress-nginx's ParseIPNets does; an address is its own /32 or /128.
func parsePrefixList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%s is not an address or CIDR", entryText(item))
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	if len(out) == 0 {
		return nil, errors.New("want a comma list of addresses and CIDRs")
	}
	return out, nil
}

// finishRateLimit gives the limits read the Ingress's zone and the
// answer to refused requests; limits without a rate or a connection
// limit (an allow-list or multiplier alone) are dropped.
func finishRateLimit(p *route.Policy, zone string, status int) {
	rl := p.RateLimit
	if rl == nil {
		return
	}
	if rl.RPS == 0 && rl.RPM == 0 && rl.Connections == 0 {
		p.RateLimit = nil
		return
	}
	rl.Zone = zone
	if status != 0 && status != 503 {
		rl.Status = status
	}
}

// sourceRanges returns the source ranges being read, made on first use.
func (n *nginxRead) sourceRanges() *route.SourceRanges {
	if n.cfg.policy.SourceRanges == nil {
		n.cfg.policy.SourceRanges = &route.SourceRanges{}
	}
	return n.cfg.policy.SourceRanges
}
