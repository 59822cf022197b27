package pipeline

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// hashPipeline serves hash.test "/" from n endpoints with upstream-hash-by
// key and subset; swap changes the endpoints.
func hashPipeline(key string, subset int, affinity bool) (*Listener, func(n int)) {
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	pol := &route.Policy{HashBy: &route.HashBy{Key: route.MustTemplate(key, false), SubsetSize: subset}}
	if affinity {
		pol.Affinity = &route.Affinity{Mode: route.AffinityBalanced, CookieName: "INGRESSCOOKIE", CookiePath: "/"}
	}
	swap := func(n int) {
		be := &route.Backend{Key: "ns/app:80"}
		for i := range n {
			be.Endpoints = append(be.Endpoints, route.Endpoint{Address: fmt.Sprintf("192.0.2.%d:80", 10+i)})
		}
		rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(be)}
		p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("hash.test", []*route.Route{rt})}, nil))
	}
	swap(5)
	return p.Listener(ListenerOptions{}), swap
}

func hashGet(t *testing.T, l *Listener, path string) string {
	t.Helper()
	x := decide(l, &testHead{host: "hash.test", path: path}, nil)
	if x.Endpoint == nil {
		t.Fatalf("not forwarded: %d %s", x.Reply.Status, x.Reply.Reason)
	}
	return x.Endpoint.Address
}

// The same key goes to the same endpoint; keys spread over all of them;
// a sixth endpoint takes about a sixth of the keys and moves no other.
func TestHashBy(t *testing.T) {
	t.Parallel()
	l, swap := hashPipeline("$request_uri", 0, false)
	before := map[string]string{}
	used := map[string]int{}
	for i := range 600 {
		path := fmt.Sprintf("/item/%d", i)
		ep := hashGet(t, l, path)
		if again := hashGet(t, l, path); again != ep {
			t.Fatalf("%s went to %s, then %s", path, ep, again)
		}
		before[path] = ep
		used[ep]++
	}
	if len(used) != 5 {
		t.Fatalf("keys went to %d endpoints, want all 5: %v", len(used), used)
	}
	for ep, n := range used {
		if n < 60 {
			t.Errorf("%s got %d of 600 keys", ep, n)
		}
	}
	swap(6)
	moved := 0
	for path, ep := range before {
		now := hashGet(t, l, path)
		if now != ep {
			if now != "192.0.2.15:80" {
				t.Fatalf("%s moved from %s to %s, an old endpoint", path, ep, now)
			}
			moved++
		}
	}
	if moved < 50 || moved > 150 {
		t.Errorf("%d of 600 keys moved to the new endpoint, want about 100", moved)
	}
}

// With a subset, a key goes to its subset of endpoints, at random among
// them.
func TestHashBySubset(t *testing.T) {
	t.Parallel()
	l, swap := hashPipeline("$http_x_user", 3, false)
	swap(10)
	for _, user := range []string{"alice", "bob", "carol"} {
		seen := map[string]bool{}
		for range 300 {
			x := decide(l, &testHead{host: "hash.test", header: http.Header{"X-User": {user}}}, nil)
			seen[x.Endpoint.Address] = true
		}
		if len(seen) != 3 {
			t.Errorf("user %s went to %d endpoints, want its subset of 3: %v", user, len(seen), seen)
		}
	}
}

// Cookie affinity comes first, as ingress-nginx's balancer prefers it:
// a session stays on its endpoint whatever the path the hash is of.
func TestHashByAffinityFirst(t *testing.T) {
	t.Parallel()
	l, _ := hashPipeline("$request_uri", 0, true)
	x := decide(l, &testHead{host: "hash.test", path: "/a"}, nil)
	first, set := x.Endpoint.Address, editedValues(&x.Resp, "Set-Cookie")
	if set == "" {
		t.Fatal("no affinity cookie")
	}
	pair, _, _ := strings.Cut(set, ";")
	for i := range 50 {
		x := decide(l, &testHead{host: "hash.test", path: fmt.Sprintf("/p/%d", i), header: http.Header{"Cookie": {pair}}}, nil)
		if x.Endpoint.Address != first {
			t.Fatalf("path /p/%d with the session cookie went to %s, not the session's %s: the hash took over", i, x.Endpoint.Address, first)
		}
	}
}

func BenchmarkHashBy(b *testing.B) {
	l, _ := hashPipeline("$request_uri", 0, false)
	in := &testHead{host: "hash.test", path: "/items/42", header: http.Header{}}
	x := &Exchange{}
	b.ReportAllocs()
	for b.Loop() {
		x.Reset()
		x.In = in
		x.PeerIP = "198.51.100.1"
		l.Decide(x)
	}
}
