package controller

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// Gateways with addresses of their own (Options.GatewayAddresses, from
// --gateway-addresses): each Gateway of ours gets one address of the
// pool, and its listeners listen there, on their own ports. The routes
// attached to the listeners on one port make a table of their own
// (route.Listener), served at that address and port only, so two
// Gateways on port 80 answer differently, and a route is served only
// where it attached. Ingresses stay on Postern's own listeners.
//
// The address is stable: a Gateway keeps the address its status holds
// while it is in the pool and no older Gateway has it; a new Gateway
// gets the address its namespace and name hash to, or the next free one
// after it. spec.addresses may ask for addresses of the pool.

// child returns a builder for the table of one Gateway listener port: it
// resolves Services, EndpointSlices and Secrets as b does and shares b's
// backends (so that the tables share them), but has hosts, TLS hosts and
// Problems of its own, which b takes over in pooledListeners.
func (b *builder) child() *builder {
	return &builder{
		opts:     b.opts,
		secrets:  b.secrets,
		cms:      b.cms,
		certs:    b.certs,
		tls:      make(map[string]*tlsClaim),
		services: b.services,
		slices:   b.slices,
		backends: b.backends,
		hosts:    make(map[string]*hostRoutes),
	}
}

// pooled reports whether Gateways get addresses of their own.
func (t *gatewayTranslation) pooled() bool { return t.opts.GatewayAddresses.IsValid() }

// portBuilder returns the builder of gs's listeners on port, made on
// first use; in shared mode, the table's own builder.
func (t *gatewayTranslation) portBuilder(gs *gatewayState, port gatewayv1.PortNumber) *builder {
	if !t.pooled() {
		return t.b
	}
	if gs.ports == nil {
		gs.ports = make(map[gatewayv1.PortNumber]*builder)
	}
	b := gs.ports[port]
	if b == nil {
		b = t.b.child()
		gs.ports[port] = b
	}
	return b
}

// routeBuilder returns the builder of the routes attached to listener l:
// with a pool of addresses, one of its own (l.rb, a section of its
// port's table, made on first use); in shared mode the table's own
// builder.
func (t *gatewayTranslation) routeBuilder(l *listenerState) *builder {
	if !t.pooled() {
		return t.b
	}
	if l.rb == nil {
		l.rb = t.b.child()
	}
	return l.rb
}

// assignAddresses gives each Gateway of gws (oldest first) its address
// of the pool: one spec.addresses asks for, else the one its status
// holds, else the one its name hashes to or the next free one. A Gateway
// that gets none is not served.
func (t *gatewayTranslation) assignAddresses(gws []*gatewayState) {
	pool := t.opts.GatewayAddresses.Masked()
	taken := make(map[netip.Addr]bool)
	var later []*gatewayState
	for _, gs := range gws {
		if len(gs.gw.Spec.Addresses) > 0 {
			t.requestedAddress(gs, pool, taken)
			continue
		}
		for _, a := range gs.gw.Status.Addresses {
			ip, err := netip.ParseAddr(a.Value)
			if err == nil && (a.Type == nil || *a.Type == gatewayv1.IPAddressType) && usable(pool, ip) && !taken[ip] {
				gs.addr = ip
				taken[ip] = true
				break
			}
		}
		if !gs.addr.IsValid() {
			later = append(later, gs)
		}
	}
	for _, gs := range later {
		ip, ok := hashedAddress(pool, gs.src.namespace+"/"+gs.src.name, taken)
		if !ok {
			gs.addrReason = string(gatewayv1.GatewayReasonAddressNotAssigned)
			gs.addrMsg = fmt.Sprintf("every address of the pool %s is taken", pool)
			continue
		}
		gs.addr = ip
		taken[ip] = true
	}
}

// requestedAddress gives gs the address its spec.addresses asks for, when
// that is one free address of the pool: an address of another type is
// not supported (UnsupportedAddress); an address Postern cannot give (not
// of the pool, taken by an older Gateway, or a second one: Postern gives a
// Gateway one address) leaves gs without any (AddressNotUsable), since
// serving on some of the addresses asked for is not what was asked.
func (t *gatewayTranslation) requestedAddress(gs *gatewayState, pool netip.Prefix, taken map[netip.Addr]bool) {
	for _, a := range gs.gw.Spec.Addresses {
		if a.Type != nil && *a.Type != gatewayv1.IPAddressType {
			gs.addrReason = string(gatewayv1.GatewayReasonUnsupportedAddress)
			gs.addrMsg = fmt.Sprintf("address type %s is not supported; Postern assigns IPAddress addresses of %s", quoteShort(string(*a.Type)), pool)
			return
		}
	}
	notUsable := func(msg string) {
		gs.addrReason, gs.addrMsg = string(gatewayv1.GatewayReasonAddressNotUsable), msg
	}
	var want netip.Addr
	for _, a := range gs.gw.Spec.Addresses {
		ip, err := netip.ParseAddr(a.Value)
		switch {
		case err != nil:
			notUsable(fmt.Sprintf("address %s is not an IP address", quoteShort(a.Value)))
			return
		case !usable(pool, ip):
			notUsable(fmt.Sprintf("address %s is not an address of the pool %s", ip, pool))
			return
		case taken[ip]:
			notUsable(fmt.Sprintf("address %s is taken by an older Gateway", ip))
			return
		case want.IsValid() && want != ip:
			notUsable("spec.addresses asks for more than one address; Postern gives a Gateway one")
			return
		}
		want = ip
	}
	gs.addr = want
	taken[want] = true
}

// usable reports whether ip is an address of pool a Gateway may get: not
// the pool's network address, nor an IPv4 pool's broadcast address.
func usable(pool netip.Prefix, ip netip.Addr) bool {
	if !pool.Contains(ip) || ip == pool.Addr() {
		return false
	}
	if ip.Is4() && pool.Bits() < 31 {
		last := lastAddr(pool)
		return ip != last
	}
	return true
}

// lastAddr returns the last address of pool.
func lastAddr(pool netip.Prefix) netip.Addr {
	b := pool.Addr().AsSlice()
	host := len(b)*8 - pool.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// maxProbes bounds the search for a free address after the hashed one.
const maxProbes = 1 << 16

// hashedAddress returns the address of pool that key hashes to, or the
// first free one after it (wrapping), none when the pool is full.
func hashedAddress(pool netip.Prefix, key string, taken map[netip.Addr]bool) (netip.Addr, bool) {
	bits := pool.Addr().BitLen() - pool.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h.Sum64())
	off := new(big.Int).Mod(new(big.Int).SetBytes(sum[:]), size)
	base := new(big.Int).SetBytes(pool.Addr().AsSlice())
	probes := maxProbes
	if size.IsInt64() && size.Int64() < maxProbes {
		probes = int(size.Int64())
	}
	for range probes {
		n := new(big.Int).Add(base, off)
		raw := n.FillBytes(make([]byte, len(pool.Addr().AsSlice())))
		ip, _ := netip.AddrFromSlice(raw)
		if usable(pool, ip) && !taken[ip] {
			return ip, true
		}
		off.Add(off, big.NewInt(1))
		if off.Cmp(size) >= 0 {
			off.SetInt64(0)
		}
	}
	return netip.Addr{}, false
}

// pooledListeners returns the listener tables of every Gateway with an
// address, one per port, sorted by address; the Problems of their
// builders move to t.b.
func (t *gatewayTranslation) pooledListeners(gws []*gatewayState) []*route.Listener {
	var out []*route.Listener
	for _, gs := range gws {
		if !gs.addr.IsValid() {
			continue
		}
		var ports []gatewayv1.PortNumber
		for _, l := range gs.listeners {
			if l.serving && !slices.Contains(ports, l.spec.Port) {
				ports = append(ports, l.spec.Port)
			}
		}
		slices.Sort(ports)
		for _, port := range ports {
			cb := t.portBuilder(gs, port) // the TLS hosts of its listeners
			table := route.Empty().WithTLS(cb.tlsHosts())
			table.DefaultCertificate = cb.gatewayDefault
			t.b.problems = append(t.b.problems, cb.problems...)
			tls := false
			for _, l := range gs.listeners {
				if !l.serving || l.spec.Port != port {
					continue
				}
				if l.spec.Protocol == gatewayv1.HTTPSProtocolType {
					tls = true
					if l.clientValidation != nil && table.ClientValidation == nil {
						table.ClientValidation = l.clientValidation
					}
				}
				// Each listener serves its own routes only.
				rb := t.routeBuilder(l)
				table.Sections = append(table.Sections, &route.Section{Listener: string(l.spec.Name), Hostname: l.host, Table: rb.table()})
				t.b.problems = append(t.b.problems, rb.problems...)
			}
			slices.SortFunc(table.Sections, func(a, b *route.Section) int { return strings.Compare(a.Listener, b.Listener) })
			out = append(out, &route.Listener{
				Address: netip.AddrPortFrom(gs.addr, uint16(port)).String(),
				TLS:     tls,
				Gateway: gs.src.route(),
				Table:   table,
			})
		}
	}
	return out
}

// statusAddresses returns what gs's status.addresses are: its own
// address in pool mode (none when it has none), nil (the published
// ones) in shared mode.
func (t *gatewayTranslation) statusAddresses(gs *gatewayState) []gatewayv1.GatewayStatusAddress {
	if !t.pooled() {
		return nil
	}
	if !gs.addr.IsValid() {
		return []gatewayv1.GatewayStatusAddress{}
	}
	return []gatewayv1.GatewayStatusAddress{{Type: ptr.To(gatewayv1.IPAddressType), Value: gs.addr.String()}}
}
