package pipeline

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// The rate limits of route.RateLimit, nginx's limit_req (with nodelay)
// and limit_conn as ingress-nginx configures them. They run after the
// redirect to HTTPS and before access checks (reference §1.5), so that
// unauthenticated requests count; a CORS preflight is answered before.

// limiter is the route policy of a route.RateLimit.
type limiter struct {
	z      *zone
	exempt []netip.Prefix
	status int
}

// zone holds the counts of the routes of one RateLimit.Zone, kept across
// table swaps while a route uses it. Each client address has one entry;
// a shard holds at most zoneShardCap of them.
type zone struct {
	rps, rpm  bucketRate
	connLimit int32
	shards    [zoneShards]zoneShard
	now       func() int64 // milliseconds, monotonic
	shardCap  int
}

const (
	zoneShards = 16
	// zoneShardCap bounds the memory of a zone under many client
	// addresses: 16 × 4096 entries of about 100 bytes, some 6 MiB at
	// most; nginx's zones of ingress-nginx are 5 MiB.
	zoneShardCap = 4096
)

type zoneShard struct {
	mu sync.Mutex
	m  map[netip.Addr]clientState
}

// clientState is one client's: the excess of its two rates in
// thousandths of a request, when each was last let through, and its
// requests in progress.
type clientState struct {
	rps, rpm bucket
	conns    int32
}

// bucket is nginx's limit_req node: excess requests (× 1000) as of last.
type bucket struct {
	excess, last int64
}

// bucketRate is a limit_req zone's rate and burst, both × 1000; a zero
// rate is no limit.
type bucketRate struct {
	rate, burst int64
}

// take returns b after one more request at now, and whether r lets it
// through: the excess drains at the rate, and a request that would take
// it over the burst is refused (and leaves b as it was), as
// ngx_http_limit_req_lookup does.
func (r bucketRate) take(b bucket, fresh bool, now int64) (bucket, bool) {
	if r.rate == 0 {
		return b, true
	}
	if fresh {
		return bucket{excess: 0, last: now}, true
	}
	elapsed := max(now-b.last, 0)
	excess := max(b.excess-r.rate*elapsed/1000+1000, 0)
	if excess > r.burst {
		return b, false
	}
	return bucket{excess: excess, last: now}, true
}

// drained reports whether b holds nothing any more at now: the entry can
// go, a new one would be the same.
func (r bucketRate) drained(b bucket, now int64) bool {
	return r.rate == 0 || b.excess-r.rate*max(now-b.last, 0)/1000 <= 0
}

var monoStart = time.Now()

func monoMillis() int64 { return time.Since(monoStart).Milliseconds() }

// zoneKey is what identifies a zone: its name and limits; changing a
// limit starts new counts, as a new nginx zone does.
func zoneKey(rl *route.RateLimit) string {
	return rl.Zone + "|" + strconv.Itoa(rl.RPS) + "|" + strconv.Itoa(rl.RPM) + "|" + strconv.Itoa(rl.Burst) + "|" + strconv.Itoa(rl.Connections)
}

func newZone(rl *route.RateLimit) *zone {
	burst := int64(rl.Burst)
	if burst <= 0 {
		burst = route.DefaultBurst
	}
	z := &zone{now: monoMillis, shardCap: zoneShardCap, connLimit: int32(min(rl.Connections, 1<<30))}
	if rl.RPS > 0 {
		z.rps = bucketRate{rate: int64(rl.RPS) * 1000, burst: int64(rl.RPS) * burst * 1000}
	}
	if rl.RPM > 0 {
		z.rpm = bucketRate{rate: int64(rl.RPM) * 1000 / 60, burst: int64(rl.RPM) * burst * 1000}
	}
	for i := range z.shards {
		z.shards[i].m = make(map[netip.Addr]clientState)
	}
	return z
}

// zones are the pipeline's zones by zoneKey.
type zones struct{ keptMap[string, *zone] }

func (zs *zones) get(rl *route.RateLimit) *zone {
	return zs.keep(zoneKey(rl), func() *zone { return newZone(rl) })
}

// newLimiter returns the limit policy of rt, if it has limits.
func newLimiter(rt *route.Route, zs *zones) (limiter, bool) {
	if rt.Policy == nil || rt.Policy.RateLimit == nil || zs == nil {
		return limiter{}, false
	}
	rl := rt.Policy.RateLimit
	if rl.RPS <= 0 && rl.RPM <= 0 && rl.Connections <= 0 {
		return limiter{}, false
	}
	status := rl.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	return limiter{z: zs.get(rl), exempt: rl.Exempt, status: status}, true
}

func (l limiter) Request(x *Exchange) {
	ip, ok := clientAddr(x)
	if !ok {
		return // not over IP: nothing to count by
	}
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return
		}
	}
	switch l.z.admit(ip) {
	case admitRate:
		x.fail(l.status, "limit-rps/limit-rpm")
	case admitConns:
		x.fail(l.status, "limit-connections")
	default:
		if l.z.connLimit > 0 {
			x.held, x.heldIP = l.z, ip
		}
	}
}

// clientAddr returns the client's address as the forwarding policy found
// it (after trusted proxies and the PROXY protocol), unmapped; false when
// the connection is not over IP.
func clientAddr(x *Exchange) (netip.Addr, bool) {
	ip := x.Peer
	if x.ClientIP != "" && (!ip.IsValid() || x.ClientIP != x.PeerIP) {
		a, err := netip.ParseAddr(x.ClientIP)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = a
	}
	if !ip.IsValid() {
		a, err := netip.ParseAddr(x.PeerIP)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = a
	}
	return ip.Unmap(), true
}

// What admit says.
const (
	admitted = iota
	admitRate
	admitConns
)

// admit counts a request of ip and says whether it may go on; one that
// may holds a connection slot, when the zone limits them, until release.
// The rates are checked first (limit_req runs before limit_conn), both
// or neither counting the request.
func (z *zone) admit(ip netip.Addr) int {
	s := z.shard(ip)
	now := z.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[ip]
	if !ok && len(s.m) >= z.shardCap {
		z.evict(s, now)
	}
	rps, ok1 := z.rps.take(st.rps, !ok, now)
	rpm, ok2 := z.rpm.take(st.rpm, !ok, now)
	if !ok1 || !ok2 {
		return admitRate
	}
	if z.connLimit > 0 && st.conns >= z.connLimit {
		return admitConns
	}
	st.rps, st.rpm = rps, rpm
	if z.connLimit > 0 {
		st.conns++
	}
	s.m[ip] = st
	return admitted
}

// release gives back the connection slot of a request of ip.
func (z *zone) release(ip netip.Addr) {
	s := z.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[ip]
	if !ok || st.conns == 0 {
		return
	}
	st.conns--
	if now := z.now(); st.conns == 0 && z.rps.drained(st.rps, now) && z.rpm.drained(st.rpm, now) {
		delete(s.m, ip)
		return
	}
	s.m[ip] = st
}

// evict makes room in a full shard: the entries that hold nothing go;
// when every one still does, a few with no request in progress go (as
// nginx drops its oldest when the zone is full), so that the next
// inserts are cheap. An entry with requests in progress is never
// dropped: its slots must come back to it.
func (z *zone) evict(s *zoneShard, now int64) {
	for ip, st := range s.m {
		if st.conns == 0 && z.rps.drained(st.rps, now) && z.rpm.drained(st.rpm, now) {
			delete(s.m, ip)
		}
	}
	if len(s.m) < z.shardCap {
		return
	}
	n := 0
	for ip, st := range s.m {
		if st.conns == 0 {
			delete(s.m, ip)
			if n++; n == 8 {
				return
			}
		}
	}
}

func (z *zone) shard(ip netip.Addr) *zoneShard {
	b := ip.As16()
	h := uint32(2166136261)
	for _, c := range b[8:] {
		h = (h ^ uint32(c)) * 16777619
	}
	return &z.shards[h%zoneShards]
}

// entries returns how many client entries z holds.
func (z *zone) entries() int {
	n := 0
	for i := range z.shards {
		s := &z.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
