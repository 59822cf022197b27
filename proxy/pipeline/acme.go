package pipeline

import "strings"

// acmeChallengePrefix is where ACME http-01 challenges are fetched (RFC
// 8555 §8.3).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// Challenges answers ACME http-01 challenges: the tls package's issuer,
// through the proxy's adapter of its handler.
type Challenges interface {
	// Challenge returns the answer to the challenge request for path on
	// host.
	Challenge(host, path string) Reply
}

// acme is the plain listener's policy that answers the ACME http-01
// challenges of the hosts whose certificates come from ACME. Challenges
// for other hosts are routed like any request, so a backend can answer
// its own.
type acme struct {
	challenges Challenges
}

func (a acme) Request(x *Exchange) {
	if !strings.HasPrefix(x.In.Path(), acmeChallengePrefix) {
		return
	}
	if th := x.table.TLSHost(x.In.Host()); th != nil && th.ACME {
		x.Reply = a.challenges.Challenge(x.In.Host(), x.In.Path())
		if x.Reply.Status == 0 {
			x.fail(500, "ACME challenge answer without a status")
		}
	}
}
