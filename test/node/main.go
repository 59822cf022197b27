// Command postern-node is the node agent of Postern's test cluster: a kubelet for
// tests. It registers one Node, keeps its Ready condition and Lease fresh, and runs
// every Pod bound to it as local processes, each Pod in a network namespace of its own
// on the Node's bridge, with the Pod's volumes bind-mounted where the containers expect
// them. Container images map to binaries through a table (--image); a Pod whose image
// is not in it waits with ErrImagePull, as a Pod whose image cannot be pulled does.
//
//	postern-node --kubeconfig node.kubeconfig --node-name node-1 --pod-cidr 198.51.100.0/26 \
//	    --api-server 192.0.2.1:6443 --image '*postern-dev/echo=bin/echo' ...
//
// It must run as root inside a network namespace of the caller's (test/testbed makes
// one): it adds a bridge there, and the Pods' namespaces hang off that bridge only.
// SIGTERM stops every Pod (its processes, its namespace) and exits; SIGKILL is a Node
// lost: the Pods' processes die with the agent, and the cluster finds out from the
// Lease.
//
// Where things are: the Node and its Lease in node.go; a Pod's life (volumes,
// containers, status, termination) in pod.go and container.go; the network in
// network.go; probes in probe.go; the kubelet port (logs) in server.go; the image
// table in images.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == podExecCommand {
		podExec(os.Args[2:]) // does not return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "postern-node:", err)
		os.Exit(1)
	}
}

type config struct {
	kubeconfig    string
	nodeName      string
	podCIDR       netip.Prefix
	apiServer     string // host:port the Pods reach the API server at
	stateDir      string
	netnsPrefix   string
	bridge        string
	tlsCert       string
	tlsKey        string
	clientCA      string
	kubeletPort   int
	leaseDuration time.Duration
	statusEvery   time.Duration
	images        imageTable
	version       string
	labels        map[string]string
}

type imageFlag struct{ t *imageTable }

func (f imageFlag) String() string { return "" }
func (f imageFlag) Set(v string) error {
	return f.t.add(v)
}

type labelFlag map[string]string

func (f labelFlag) String() string { return "" }
func (f labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", v)
	}
	f[k] = val
	return nil
}

func parseFlags(args []string) (*config, error) {
	c := &config{labels: map[string]string{}}
	fs := flag.NewFlagSet("postern-node", flag.ContinueOnError)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the Node's identity (system:node:<name> in system:nodes)")
	fs.StringVar(&c.nodeName, "node-name", "", "name of the Node to register")
	cidr := fs.String("pod-cidr", "", "the Node's Pod addresses, e.g. 198.51.100.0/26; the first is the Node's own, on its bridge")
	fs.StringVar(&c.apiServer, "api-server", "", "host:port of the API server, given to Pods as KUBERNETES_SERVICE_HOST/PORT")
	fs.StringVar(&c.stateDir, "state-dir", "", "folder for the Pods' volumes, logs and process ids")
	fs.StringVar(&c.netnsPrefix, "netns-prefix", "", "prefix of the Pods' network namespace names (default postern-<node-name>)")
	fs.StringVar(&c.bridge, "bridge", "", "name of the Node's bridge (default derived from the node name)")
	fs.StringVar(&c.tlsCert, "tls-cert-file", "", "serving certificate of the kubelet port")
	fs.StringVar(&c.tlsKey, "tls-private-key-file", "", "its key")
	fs.StringVar(&c.clientCA, "client-ca-file", "", "CA that signs the client certificates the kubelet port accepts (the API server's)")
	fs.IntVar(&c.kubeletPort, "port", 10250, "the kubelet port, on the Node's address")
	fs.DurationVar(&c.leaseDuration, "lease-duration", 40*time.Second, "the Node Lease's duration; it is renewed every quarter of it")
	fs.DurationVar(&c.statusEvery, "status-interval", 10*time.Second, "how often the Node's status is posted")
	fs.StringVar(&c.version, "kubelet-version", "v1.37.2", "the version the Node reports")
	fs.Var(imageFlag{&c.images}, "image", "GLOB=BINARY: images matching GLOB (* matches anything, tag and digest left out) run BINARY; repeated")
	fs.Var(labelFlag(c.labels), "node-label", "key=value label of the Node; repeated")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]string{"kubeconfig": c.kubeconfig, "node-name": c.nodeName, "pod-cidr": *cidr,
		"api-server": c.apiServer, "state-dir": c.stateDir, "tls-cert-file": c.tlsCert, "tls-private-key-file": c.tlsKey, "client-ca-file": c.clientCA} {
		if v == "" {
			return nil, fmt.Errorf("--%s is required", name)
		}
	}
	p, err := netip.ParsePrefix(*cidr)
	if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
		return nil, fmt.Errorf("--pod-cidr %q: want an IPv4 prefix of /29 or wider", *cidr)
	}
	c.podCIDR = p.Masked()
	if c.netnsPrefix == "" {
		c.netnsPrefix = "postern-" + c.nodeName
	}
	if c.bridge == "" {
		c.bridge = shortName("pb", c.nodeName)
	}
	if c.leaseDuration < 4*time.Second {
		return nil, errors.New("--lease-duration must be at least 4s")
	}
	return c, nil
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := newAgent(c)
	if err != nil {
		return err
	}
	return a.run(ctx)
}
