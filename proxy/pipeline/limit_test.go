package pipeline

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// limitPipeline serves limit.test "/" with rl, and returns the listener
// and a clock the zone reads (milliseconds).
func limitPipeline(t *testing.T, rl *route.RateLimit, trusted string) (*Listener, *int64) {
	t.Helper()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{RateLimit: rl}, Backends: route.Single(be)}
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("limit.test", []*route.Route{rt})}, nil))
	var clock int64
	z := p.kept.zones.get(rl)
	z.now = func() int64 { return clock }
	opts := ListenerOptions{}
	if trusted != "" {
		tp, err := ParseTrustedProxies([]string{trusted})
		if err != nil {
			t.Fatal(err)
		}
		opts.Trusted = tp
	}
	return p.Listener(opts), &clock
}

// limitGet decides a GET from client and returns its status (0:
// forwarded); the exchange is Done unless keep.
func limitGet(l *Listener, client string, keep bool) (int, *Exchange) {
	x := decide(l, &testHead{host: "limit.test", path: "/"}, func(x *Exchange) {
		x.Remote, x.PeerIP, x.Peer = client+":1234", client, netip.Addr{}
	})
	if !keep {
		x.Done()
	}
	return x.Reply.Status, x
}

// limit-rps: N with the default multiplier lets 5N+1 requests through at
// once (nginx's burst of 5N with nodelay, the first request free), then
// one more every 1/N seconds.
func TestRateLimitRPS(t *testing.T) {
	t.Parallel()
	l, clock := limitPipeline(t, &route.RateLimit{Zone: "ns/a", RPS: 2}, "")
	passed := 0
	for range 20 {
		if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
			passed++
		} else if st != http.StatusServiceUnavailable {
			t.Fatalf("refused with %d, want 503", st)
		}
	}
	if passed != 11 {
		t.Errorf("%d requests of a burst passed, want 11 (2 × 5 + 1)", passed)
	}
	if st, _ := limitGet(l, "198.51.100.2", false); st != 0 {
		t.Errorf("another client refused (%d): counts are per address", st)
	}
	*clock += 499
	if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
		t.Error("passed 499 ms later, want refused until half a second has passed")
	}
	*clock++
	if st, _ := limitGet(l, "198.51.100.1", false); st != 0 {
		t.Errorf("refused (%d) half a second later, want one more through", st)
	}
	if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
		t.Error("two passed in half a second")
	}
}

func TestRateLimitRPMAndBurst(t *testing.T) {
	t.Parallel()
	l, clock := limitPipeline(t, &route.RateLimit{Zone: "ns/a", RPM: 6, Burst: 1, Status: http.StatusTooManyRequests}, "")
	passed := 0
	for range 10 {
		st, _ := limitGet(l, "2001:db8::1", false)
		switch st {
		case 0:
			passed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d, want 429", st)
		}
	}
	if passed != 7 {
		t.Errorf("%d passed, want 7 (6 × 1 + 1)", passed)
	}
	*clock += 10_000 // 6 a minute: one every 10 s
	if st, _ := limitGet(l, "2001:db8::1", false); st != 0 {
		t.Errorf("refused (%d) 10 s later", st)
	}
}

// Both rates apply, and a request one refuses counts in neither.
func TestRateLimitBothRates(t *testing.T) {
	t.Parallel()
	l, clock := limitPipeline(t, &route.RateLimit{Zone: "ns/a", RPS: 10, RPM: 2, Burst: 1}, "")
	passed := 0
	for range 5 {
		if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
			passed++
		}
	}
	if passed != 3 {
		t.Errorf("%d passed, want 3 (the per-minute burst of 2 + 1)", passed)
	}
	// 2 a minute is 33 thousandths a second, as nginx rounds it: one
	// request drains in a little over 30 s.
	*clock += 30_000
	if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
		t.Error("passed after 30 s, before nginx would")
	}
	*clock += 400
	if st, _ := limitGet(l, "198.51.100.1", false); st != 0 {
		t.Errorf("refused (%d) after 30.4 s", st)
	}
}

func TestRateLimitExemptAndTrustedProxies(t *testing.T) {
	t.Parallel()
	rl := &route.RateLimit{Zone: "ns/a", RPS: 1, Burst: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	l, _ := limitPipeline(t, rl, "192.0.2.0/24")
	for i := range 10 {
		if st, _ := limitGet(l, "10.1.2.3", false); st != 0 {
			t.Fatalf("exempt client refused at request %d", i)
		}
	}
	// Behind a trusted proxy, the client is the one it names: two
	// clients behind one proxy have counts of their own.
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		passed := 0
		for range 4 {
			x := decide(l, &testHead{host: "limit.test", header: http.Header{"X-Forwarded-For": {client}}}, func(x *Exchange) {
				x.Remote, x.PeerIP = "192.0.2.1:999", "192.0.2.1"
			})
			if x.Reply.Status == 0 {
				passed++
			}
			x.Done()
		}
		if passed != 2 {
			t.Errorf("client %s behind the proxy: %d passed, want 2", client, passed)
		}
	}
}

// limit-connections: requests in progress are counted until Done.
func TestRateLimitConnections(t *testing.T) {
	t.Parallel()
	l, _ := limitPipeline(t, &route.RateLimit{Zone: "ns/a", Connections: 3}, "")
	var held []*Exchange
	for i := range 5 {
		st, x := limitGet(l, "198.51.100.1", true)
		if i < 3 && st != 0 || i >= 3 && st != http.StatusServiceUnavailable {
			t.Fatalf("request %d: status %d", i, st)
		}
		held = append(held, x)
	}
	if st, _ := limitGet(l, "198.51.100.9", false); st != 0 {
		t.Error("another client refused")
	}
	held[0].Done()
	held[0].Done() // twice: nothing more
	if st, x := limitGet(l, "198.51.100.1", true); st != 0 {
		t.Error("refused after one finished")
	} else {
		held = append(held, x)
	}
	if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
		t.Error("a fourth in progress")
	}
	for _, x := range held {
		x.Reset() // Reset ends an exchange too
	}
	if st, _ := limitGet(l, "198.51.100.1", false); st != 0 {
		t.Error("refused with none in progress")
	}
}

// Memory stays bounded under many client addresses, and an entry with
// requests in progress is never dropped.
func TestRateLimitZoneBounded(t *testing.T) {
	t.Parallel()
	rl := &route.RateLimit{Zone: "ns/a", RPS: 1, Connections: 1}
	z := newZone(rl)
	var clock int64
	z.now = func() int64 { return clock }
	z.shardCap = 64
	busy := netip.MustParseAddr("198.51.100.1")
	if z.admit(busy) != admitted {
		t.Fatal("first request refused")
	}
	for i := range 100_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		z.admit(ip)
		z.release(ip)
	}
	if n := z.entries(); n > zoneShards*64 {
		t.Errorf("%d entries, want at most %d", n, zoneShards*64)
	}
	if z.admit(busy) != admitConns {
		t.Error("the busy client's slot was lost")
	}
	z.release(busy)
	clock += 2000
	if z.admit(busy) != admitted {
		t.Error("the busy client refused after its request ended")
	}
}

// The counts outlive a table swap that keeps the limit, and start again
// when the limit changes.
func TestRateLimitAcrossSwaps(t *testing.T) {
	t.Parallel()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	swap := func(rps int) {
		rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{RateLimit: &route.RateLimit{Zone: "ns/a", RPS: rps, Burst: 1}}, Backends: route.Single(be)}
		p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("limit.test", []*route.Route{rt})}, nil))
	}
	swap(1000)
	l := p.Listener(ListenerOptions{})
	burst := func() int {
		n := 0
		for range 3000 {
			if st, _ := limitGet(l, "198.51.100.1", false); st == 0 {
				n++
			}
		}
		return n
	}
	first := burst()
	swap(1000)
	if again := burst(); again > first/2 {
		t.Errorf("after a swap %d passed again (first %d): the counts were lost", again, first)
	}
	swap(999)
	if fresh := burst(); fresh < 999 {
		t.Errorf("a new limit passed %d, want a fresh burst", fresh)
	}
	if n := p.kept.zones.len(); n != 1 {
		t.Errorf("%d zones kept, want the one in use", n)
	}
}

func BenchmarkRateLimit(b *testing.B) {
	l, _ := limitPipeline(&testing.T{}, &route.RateLimit{Zone: "ns/a", RPS: 1 << 20, Connections: 1 << 20}, "")
	x := &Exchange{}
	in := &testHead{host: "limit.test", path: "/", header: http.Header{}}
	ips := make([]string, 200)
	for i := range ips {
		ips[i] = fmt.Sprintf("198.51.100.%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x.Reset()
		x.In = in
		x.PeerIP = ips[i%len(ips)]
		l.Decide(x)
		if x.Endpoint == nil {
			b.Fatal(x.Reply.Reason)
		}
	}
	x.Done()
}
