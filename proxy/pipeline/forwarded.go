package pipeline

import (
	"net/netip"
	"strings"
)

// The forwarding fields the proxy sets on the request to the endpoint.
const (
	headerXFF       = "X-Forwarded-For"
	headerRealIP    = "X-Real-Ip"
	headerXFHost    = "X-Forwarded-Host"
	headerXFProto   = "X-Forwarded-Proto"
	headerForwarded = "Forwarded"
)

// forwarding is the listener policy that sets the forwarding fields of the
// request to the endpoint, and finds the client the access log names.
// What is sent depends on whether the peer (the connection's remote
// address, or the PROXY protocol's source) is a trusted proxy:
//   - untrusted, the default: X-Forwarded-For and X-Real-IP are the peer's
//     address, X-Forwarded-Host the Host, X-Forwarded-Proto the listener's
//     scheme, and no Forwarded: nothing the client claimed goes through;
//   - trusted: the peer's address is appended to the X-Forwarded-For it
//     sent, its X-Forwarded-Host, X-Forwarded-Proto and Forwarded are kept
//     (Postern adds no Forwarded element of its own), and X-Real-IP is the
//     real client found in X-Forwarded-For (realClient), who the access
//     log names too.
//
// The Host is kept on the request itself: name-based backends route on it
// (RFC 9110 §7.2).
type forwarding struct {
	trusted *TrustedProxies // nil: no one
}

func (f forwarding) Request(x *Exchange) {
	in := x.In
	proto := "http"
	if x.Secure {
		proto = "https"
	}
	x.Client, x.ClientIP = x.Remote, x.PeerIP
	if x.PeerIP == "" {
		// Not an IP connection: send no address rather than the client's.
		x.Req.Del(headerXFF)
		x.Req.Del(headerRealIP)
		x.Req.Set(headerXFHost, in.Host())
		x.Req.Set(headerXFProto, proto)
		x.Req.Del(headerForwarded)
		return
	}
	if !f.trusted.Empty() {
		peer := x.Peer
		if !peer.IsValid() {
			peer, _ = netip.ParseAddr(x.PeerIP)
		}
		if peer = peer.Unmap(); peer.IsValid() && f.trusted.Contains(peer) {
			f.fromTrusted(x, peer, proto)
			return
		}
	}
	x.Req.Set(headerXFF, x.PeerIP)
	x.Req.Set(headerRealIP, x.PeerIP)
	x.Req.Set(headerXFHost, in.Host())
	x.Req.Set(headerXFProto, proto)
	x.Req.Del(headerForwarded)
}

// fromTrusted sets the forwarding fields of a request whose peer is a
// trusted proxy: what it sent is passed on.
func (f forwarding) fromTrusted(x *Exchange, peer netip.Addr, proto string) {
	in := x.In
	var xff []string
	in.Values(headerXFF, func(v string) bool {
		xff = append(xff, strings.Clone(v))
		return true
	})
	client := realClient(f.trusted, xff, in, peer)
	sent := x.PeerIP
	if len(xff) > 0 {
		sent = strings.Join(xff, ", ") + ", " + x.PeerIP
	}
	x.Client, x.ClientIP = client, client
	x.Req.Set(headerXFF, sent)
	x.Req.Set(headerRealIP, client)
	if _, n := in.Header(headerXFHost); n == 0 {
		x.Req.Set(headerXFHost, in.Host())
	}
	if v, n := in.Header(headerXFProto); n == 0 {
		x.Req.Set(headerXFProto, proto)
	} else {
		// The first value is what the proxy nearest the client saw.
		first, _, _ := strings.Cut(v, ",")
		x.viaHTTPS = strings.EqualFold(strings.TrimSpace(first), "https")
	}
}
