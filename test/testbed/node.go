package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NodeOptions is one Node of the cluster, run by the node agent (test/node).
type NodeOptions struct {
	Name string
	// CIDR holds the Node's own address (the first) and its Pods'.
	CIDR netip.Prefix
	// Agent is the node agent's binary (bin/postern-node).
	Agent string
	// Images is the agent's image table: "GLOB=BINARY" each.
	Images []string
	// LeaseDuration is the Node Lease's duration (kube's default 40 s).
	LeaseDuration time.Duration
	// Labels are added to the Node's.
	Labels map[string]string
}

// Node is a running node agent.
type Node struct {
	Name string
	IP   netip.Addr
	Proc *Proc
	opts NodeOptions
	c    *Cluster
	args []string
}

// StartNode issues the Node's identity (system:node:<name> in system:nodes, the
// identity the Node authorizer and NodeRestriction hold to its own objects) and
// serving certificate, and starts its agent.
func (c *Cluster) StartNode(o NodeOptions) (*Node, error) {
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 40 * time.Second
	}
	n := &Node{Name: o.Name, IP: firstHost(o.CIDR), opts: o, c: c}
	kc, err := c.componentKubeconfig("node-"+o.Name, "system:node:"+o.Name, "system:nodes")
	if err != nil {
		return nil, err
	}
	cert, key, err := c.PKI.Serving("node-"+o.Name+"-serving", []string{o.Name}, []net.IP{net.IP(n.IP.AsSlice())})
	if err != nil {
		return nil, err
	}
	state := filepath.Join(c.Dir, "nodes", o.Name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	n.args = []string{
		"--kubeconfig", kc, "--node-name", o.Name, "--pod-cidr", o.CIDR.String(),
		"--api-server", c.APIAddr, "--state-dir", state,
		// Named network namespaces are the machine's: the prefix keeps this run's
		// apart from any other's.
		"--netns-prefix", c.netnsPrefix() + "-" + o.Name,
		"--tls-cert-file", cert, "--tls-private-key-file", key, "--client-ca-file", c.PKI.CACert,
		"--lease-duration", o.LeaseDuration.String(),
		"--status-interval", min(10*time.Second, o.LeaseDuration/2).String(),
	}
	for _, im := range o.Images {
		n.args = append(n.args, "--image", im)
	}
	for k, v := range o.Labels {
		n.args = append(n.args, "--node-label", k+"="+v)
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, n)
	return n, nil
}

// Start runs the agent (again, after Stop or Kill).
func (n *Node) Start() error {
	p, err := n.c.start("node-"+n.Name, n.opts.Agent, n.args...)
	if err != nil {
		return err
	}
	n.Proc = p
	return nil
}

// Stop is a clean shutdown: the agent stops its Pods' containers and exits.
func (n *Node) Stop() {
	if n.Proc != nil {
		n.Proc.StopWithin(45 * time.Second)
	}
}

// Kill is a Node lost: the agent and every process of its Pods die at once, and the
// cluster learns of it only when the Node's Lease runs out.
func (n *Node) Kill() {
	if n.Proc != nil {
		n.Proc.Kill()
	}
}

// WaitNodesReady waits until every Node started is Ready.
func (c *Cluster) WaitNodesReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.Kubectl(10*time.Second, "get", "nodes", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		ready := 0
		if err == nil {
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasSuffix(l, "=True") {
					ready++
				}
			}
		}
		if err == nil && ready == len(c.nodes) {
			return nil
		}
		for _, n := range c.nodes {
			if n.Proc.Exited() {
				return fmt.Errorf("node agent %s exited: %s", n.Name, n.Proc.Tail(20))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Nodes Ready after %s: %s", ready, len(c.nodes), timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Nodes are the Nodes started, in order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// NodeCIDR is the n-th Node's (from 0) share of 198.51.100.0/24 (TEST-NET-2): a /26
// each, so four Nodes at most.
func NodeCIDR(n int) netip.Prefix {
	return netip.MustParsePrefix("198.51.100." + strconv.Itoa(64*n) + "/26")
}

func (c *Cluster) netnsPrefix() string {
	if c.Opts.NetnsPrefix != "" {
		return c.Opts.NetnsPrefix
	}
	return fmt.Sprintf("postern-%d", os.Getpid())
}
