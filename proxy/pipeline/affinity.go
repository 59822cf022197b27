package pipeline

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// Cookie session affinity (route.Affinity, ingress-nginx's affinity:
// cookie). The cookie's value is "<key>|<backend tag>": the key maps to
// the endpoint (balanced: a random key, placed by rendezvous hashing, so
// that adding an endpoint moves only the sessions it wins; persistent:
// the endpoint's own hash), the tag names the backend, so that a client
// sent to a route's canary stays with the canary and one of the mainline
// with the mainline. A request without a valid cookie gets one.

// affinity is the route policy of route.Affinity. It runs before the
// canary's, which leaves a backend the cookie chose alone; the endpoint
// is picked by stickyPick once the backend is known.
type affinity struct {
	a      *route.Affinity
	main   *route.Backend // the route's first backend
	canary *route.Backend // nil: the route has none
}

// newAffinity returns the affinity policy of rt, if it has one.
func newAffinity(rt *route.Route) (affinity, bool) {
	if rt.Policy == nil || rt.Policy.Affinity == nil || rt.Policy.Affinity.CookieName == "" {
		return affinity{}, false
	}
	return affinity{a: rt.Policy.Affinity, main: rt.First(), canary: rt.CanaryBackend()}, true
}

// sticky is what the affinity policy found in the request, for the
// endpoint pick.
type sticky struct {
	a   *route.Affinity
	key string // the cookie's key; "" when there is no valid cookie
	tag uint32 // the cookie's backend tag
}

func (p affinity) Request(x *Exchange) {
	x.sticky = sticky{a: p.a}
	v, ok := x.Cookie(p.a.CookieName)
	if !ok {
		return
	}
	key, tagText, ok := strings.Cut(v, "|")
	tag, err := strconv.ParseUint(tagText, 16, 32)
	if !ok || err != nil || len(key) != 16 {
		return
	}
	if _, err := strconv.ParseUint(key, 16, 64); err != nil {
		return
	}
	x.sticky.key, x.sticky.tag = key, uint32(tag)
	if p.canary != nil && !p.a.CanaryLegacy {
		// The session stays on the side it was sent to (ingress-nginx's
		// affinity-canary-behavior: sticky).
		switch x.sticky.tag {
		case backendTag(p.canary):
			x.Backend = p.canary
		case backendTag(p.main):
			x.Backend = p.main
		}
	}
}

// stickyPick picks the endpoint of be for a request of a route with
// affinity, and gives the client a cookie when it has no valid one for
// be; nil when be has no endpoint.
func (l *Listener) stickyPick(x *Exchange, be *route.Backend) *route.Endpoint {
	s := &x.sticky
	valid := s.key != "" && s.tag == backendTag(be)
	health := l.p.cluster.Health()
	if s.a.Mode == route.AffinityPersistent {
		if valid {
			id, _ := strconv.ParseUint(s.key, 16, 64)
			for i := range be.Endpoints {
				if ep := &be.Endpoints[i]; endpointID(ep.Address) == id {
					if !health.Ejected(ep.Address) {
						return ep
					}
					// Its endpoint is failing: served elsewhere meanwhile,
					// and moved for good only with change-on-failure.
					if !s.a.ChangeOnFailure {
						return l.p.cluster.Pick(be, x.Key)
					}
					break
				}
			}
		}
		ep := l.p.cluster.Pick(be, x.Key)
		if ep != nil {
			setStickyCookie(x, s.a, keyText(endpointID(ep.Address)), be)
		}
		return ep
	}
	key := s.key
	if !valid {
		var b [8]byte
		_, _ = rand.Read(b[:])
		key = hex.EncodeToString(b[:])
	}
	k, _ := strconv.ParseUint(key, 16, 64)
	ep := rendezvous(be.Endpoints, k, health.Ejected)
	if ep != nil && !valid {
		setStickyCookie(x, s.a, key, be)
	}
	return ep
}

// rendezvous returns the endpoint of eps with the highest score for key
// (highest random weight hashing), skipping ejected ones while another is
// left (the session comes back when its endpoint recovers); nil when eps
// is empty.
func rendezvous(eps []route.Endpoint, key uint64, ejected func(string) bool) *route.Endpoint {
	var best, bestUp *route.Endpoint
	var bestScore, bestUpScore uint64
	for i := range eps {
		ep := &eps[i]
		score := mix64(key ^ endpointID(ep.Address))
		if best == nil || score > bestScore {
			best, bestScore = ep, score
		}
		if !ejected(ep.Address) && (bestUp == nil || score > bestUpScore) {
			bestUp, bestUpScore = ep, score
		}
	}
	if bestUp != nil {
		return bestUp
	}
	return best
}

// mix64 is a 64-bit finaliser (splitmix64's), which spreads the bits of
// a key and an endpoint's hash into a score.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// endpointID is the 64-bit FNV-1a hash of an endpoint's address.
func endpointID(addr string) uint64 { return fnv64(addr) }

// fnv64 is the 64-bit FNV-1a hash of s, without the allocation of
// hash/fnv's interface.
func fnv64[T string | []byte](s T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// backendTag is a short hash of a backend's key, which the cookie carries.
func backendTag(be *route.Backend) uint32 {
	if be == nil {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(be.Key))
	return h.Sum32()
}

// keyText is k as the cookie holds it: 16 hexadecimal digits.
func keyText(k uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], k)
	return hex.EncodeToString(b[:])
}

// setStickyCookie adds the Set-Cookie of a new session with key on be to
// x's response.
func setStickyCookie(x *Exchange, a *route.Affinity, key string, be *route.Backend) {
	var b strings.Builder
	b.WriteString(a.CookieName)
	b.WriteByte('=')
	b.WriteString(key)
	b.WriteByte('|')
	b.WriteString(strconv.FormatUint(uint64(backendTag(be)), 16))
	b.WriteString("; Path=")
	b.WriteString(a.CookiePath)
	if a.CookieDomain != "" {
		b.WriteString("; Domain=")
		b.WriteString(a.CookieDomain)
	}
	if a.Expires > 0 {
		b.WriteString("; Expires=")
		b.WriteString(time.Now().Add(time.Duration(a.Expires) * time.Second).UTC().Format(http.TimeFormat))
	}
	if a.MaxAge > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.Itoa(a.MaxAge))
	}
	if x.Secure || a.Secure {
		b.WriteString("; Secure")
	}
	b.WriteString("; HttpOnly")
	leaveOut := a.SameSite == "None" && a.ConditionalSameSiteNone && sameSiteNoneIncompatible(x)
	if a.SameSite != "" && !leaveOut {
		b.WriteString("; SameSite=")
		b.WriteString(a.SameSite)
	}
	x.Resp.Add("Set-Cookie", b.String())
}

// sameSiteNoneRejected match the User-Agents of browsers that reject (or
// mishandle) cookies with SameSite=None: Chrome and Chromium 51 to 66,
// iOS 12 and Safari on macOS 10.14, UC Browser before 12.13.2.
var sameSiteNoneRejected = []*regexp.Regexp{
	regexp.MustCompile(`Chrom(e|ium)/(5[1-9]|6[0-6])\.`),
	regexp.MustCompile(`\(iP.+; CPU .*OS 12[_\d]*.*\) AppleWebKit/`),
	regexp.MustCompile(`\(Macintosh;.*Mac OS X 10_14[_\d]*.*\) AppleWebKit/.*Version/.* Safari/`),
	regexp.MustCompile(`UCBrowser/(\d|1[0-1]|12\.(\d|1[0-2]|13\.[0-1]))\.`),
}

// sameSiteNoneIncompatible reports whether x's client is one of
// sameSiteNoneRejected.
func sameSiteNoneIncompatible(x *Exchange) bool {
	ua, _ := x.In.Header("User-Agent")
	for _, re := range sameSiteNoneRejected {
		if re.MatchString(ua) {
			return true
		}
	}
	return false
}
