package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// network is the Node's bridge and the addresses of its Pods. Every Pod but a
// hostNetwork one gets a network namespace of its own, named <prefix>-<uid>, with eth0
// (one end of a veth pair whose other end is on the bridge), an address from the
// Node's CIDR and a default route through the Node's address.
type network struct {
	bridge string
	prefix string
	cidr   netip.Prefix
	nodeIP netip.Addr
	mu     sync.Mutex
	inUse  map[netip.Addr]string // address -> netns
	next   netip.Addr            // round-robin: a freed address is not given out again at once
}

func newNetwork(bridge, prefix string, cidr netip.Prefix) *network {
	ip := cidr.Addr().Next()
	return &network{bridge: bridge, prefix: prefix, cidr: cidr, nodeIP: ip, inUse: map[netip.Addr]string{}, next: ip.Next()}
}

// ipCmd runs ip(8) with a bound time.
func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup removes what an earlier agent of this Node left (namespaces, the bridge) and
// makes the bridge with the Node's address; packets between bridges (Nodes) are
// forwarded.
func (n *network) setup() error {
	n.cleanupLeftovers()
	_ = ipCmd("link", "del", n.bridge)
	if err := ipCmd("link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := ipCmd("addr", "add", netip.PrefixFrom(n.nodeIP, n.cidr.Bits()).String(), "dev", n.bridge); err != nil {
		return err
	}
	if err := ipCmd("link", "set", n.bridge, "up"); err != nil {
		return err
	}
	if err := ipCmd("link", "set", "lo", "up"); err != nil {
		return err
	}
	// Per network namespace: this is the caller's, not the machine's.
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
}

// cleanupLeftovers kills the processes in, and deletes, every namespace of ours.
func (n *network) cleanupLeftovers() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.prefix+"-") {
			killNetnsPids(e.Name())
			_ = ipCmd("netns", "del", e.Name())
		}
	}
}

// killNetnsPids kills the processes that live in the namespace ns.
func killNetnsPids(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
}

// teardown removes the bridge and every namespace still there.
func (n *network) teardown() {
	n.cleanupLeftovers()
	_ = ipCmd("link", "del", n.bridge)
}

// shortName is prefix and a hash of name, short enough for a Linux interface name.
func shortName(prefix, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:])[:8]
}

// sandbox is one Pod's network namespace.
type sandbox struct {
	netns string // "" for hostNetwork
	ip    netip.Addr
	veth  string
}

// add makes the namespace of the Pod with uid and gives it an address.
func (n *network) add(uid string) (*sandbox, error) {
	ns := n.prefix + "-" + uid
	ip, err := n.allocate(ns)
	if err != nil {
		return nil, err
	}
	sb := &sandbox{netns: ns, ip: ip, veth: shortName("pv", ns)}
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", sb.veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", sb.veth, "master", n.bridge, "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(ip, n.cidr.Bits()).String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "route", "add", "default", "via", n.nodeIP.String()},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			n.remove(sb)
			return nil, err
		}
	}
	return sb, nil
}

// remove deletes the namespace (its processes must be gone) and frees the address.
func (n *network) remove(sb *sandbox) {
	if sb == nil || sb.netns == "" {
		return
	}
	killNetnsPids(sb.netns)
	_ = ipCmd("netns", "del", sb.netns)
	_ = ipCmd("link", "del", sb.veth)
	n.mu.Lock()
	delete(n.inUse, sb.ip)
	n.mu.Unlock()
}

// allocate hands out the next free address after the last one given.
func (n *network) allocate(ns string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.next
	for range 1 << (32 - n.cidr.Bits()) {
		if !n.cidr.Contains(a) || a == lastAddr(n.cidr) {
			a = n.nodeIP.Next()
		}
		if _, used := n.inUse[a]; !used && a != n.nodeIP {
			n.inUse[a] = ns
			n.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("no free Pod address left in %s", n.cidr)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<host - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
