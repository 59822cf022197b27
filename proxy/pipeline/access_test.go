package pipeline

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// The cases of ingress-nginx's e2e ipdenylist.go and ipallowlist.go, the
// client named by X-Forwarded-For from a trusted proxy (their
// use-forwarded-headers).
func TestSourceRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sr      route.SourceRanges
		clients map[string]int // client -> status (0: forwarded)
	}{
		{"deny list", route.SourceRanges{Deny: prefixes("18.0.0.0/8", "56.0.0.1/32")},
			map[string]int{"18.0.0.1": 403, "56.0.0.1": 403, "56.0.0.2": 0}},
		{"deny before allow", route.SourceRanges{Deny: prefixes("18.1.0.0/16", "56.0.0.0/8"), Allow: prefixes("18.0.0.0/8", "55.0.0.0/8")},
			map[string]int{"18.1.0.1": 403, "10.10.10.10": 403, "18.4.0.1": 0, "55.55.55.55": 0}},
		{"allow list", route.SourceRanges{Allow: prefixes("18.0.0.0/8", "56.0.0.0/8")},
			map[string]int{"18.2.3.4": 0, "192.0.2.99": 403, "::ffff:56.1.1.1": 0}},
		{"IPv6", route.SourceRanges{Allow: prefixes("2001:db8::/32")},
			map[string]int{"2001:db8::7": 0, "2001:db9::7": 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := New(Options{Cluster: upstream.New(upstream.Options{})})
			be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
			sr := tt.sr
			rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{SourceRanges: &sr}, Backends: route.Single(be)}
			p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("acl.test", []*route.Route{rt})}, nil))
			tp, err := ParseTrustedProxies([]string{"192.0.2.1"})
			if err != nil {
				t.Fatal(err)
			}
			l := p.Listener(ListenerOptions{Trusted: tp})
			for client, want := range tt.clients {
				x := decide(l, &testHead{host: "acl.test", header: http.Header{"X-Forwarded-For": {client}}}, func(x *Exchange) {
					x.Remote, x.PeerIP = "192.0.2.1:999", "192.0.2.1"
				})
				if x.Reply.Status != want {
					t.Errorf("client %s: status %d (%s), want %d", client, x.Reply.Status, x.Reply.Reason, want)
				}
			}
			// Without the trusted proxy, the peer is the client.
			x := decide(p.Listener(ListenerOptions{}), &testHead{host: "acl.test", header: http.Header{"X-Forwarded-For": {"18.4.0.1"}}}, func(x *Exchange) {
				x.Remote, x.PeerIP = "203.0.113.9:1", "203.0.113.9"
			})
			if len(sr.Allow) > 0 && x.Reply.Status != http.StatusForbidden {
				t.Errorf("an untrusted peer's X-Forwarded-For was believed: %d", x.Reply.Status)
			}
		})
	}
}
