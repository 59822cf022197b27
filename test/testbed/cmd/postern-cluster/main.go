// Command postern-cluster runs the test cluster of package testbed until it is told
// to stop (SIGTERM or SIGINT): etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and --nodes Nodes run by the node agent. It must run as root in a
// network namespace of its own; `make cluster` (test/testbed/cluster.sh) makes one and
// starts it there.
//
// When the Nodes are Ready it writes the admin's kubeconfig to <dir>/kubeconfig and
// the line "ready" to <dir>/ready.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/postern-dev/postern/test/testbed"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "postern-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	var images multi
	fs := flag.NewFlagSet("postern-cluster", flag.ContinueOnError)
	kubeDir := fs.String("kube-dir", "", "folder of etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (test/kube/build.sh prints it)")
	dir := fs.String("dir", "", "the cluster's state folder (made fresh; must not hold a cluster)")
	agent := fs.String("agent", "", "the node agent binary (bin/postern-node)")
	nodes := fs.Int("nodes", 2, "how many Nodes (1 to 4)")
	apiIP := fs.String("api-ip", "192.0.2.1", "the API server's address (local in this network namespace)")
	apiPort := fs.Int("api-port", 6443, "the API server's port")
	evict := fs.Duration("evict-after", 60*time.Second, "how long Pods stay on a Node that stopped answering before they are evicted")
	grace := fs.Duration("node-grace", 20*time.Second, "how long a Node may miss its Lease before it is NotReady")
	prefix := fs.String("netns-prefix", "", "prefix of the Pods' network namespace names (default postern-<pid>)")
	fs.Var(&images, "image", "GLOB=BINARY for the node agents' image table; repeated")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *kubeDir == "" || *dir == "" || *agent == "" {
		return fmt.Errorf("--kube-dir, --dir and --agent are required")
	}
	if *nodes < 1 || *nodes > 4 {
		return fmt.Errorf("--nodes %d: want 1 to 4", *nodes)
	}
	if entries, err := os.ReadDir(*dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: a cluster is never started on an old one's state", *dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	c, err := testbed.Start(testbed.Options{Dir: *dir, KubeDir: *kubeDir, APIIP: *apiIP, APIPort: *apiPort,
		ControlPlane: true, NodeMonitorGracePeriod: *grace, EvictAfter: *evict, Log: true, NetnsPrefix: *prefix})
	if err != nil {
		return err
	}
	defer c.Stop()
	for i := range *nodes {
		if _, err := c.StartNode(testbed.NodeOptions{Name: fmt.Sprintf("node-%d", i+1), CIDR: testbed.NodeCIDR(i),
			Agent: *agent, Images: images}); err != nil {
			return err
		}
	}
	if err := c.WaitNodesReady(2 * time.Minute); err != nil {
		fmt.Fprint(os.Stderr, c.Dump(30))
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "kubeconfig"), []byte(c.KubeconfigFor("")), 0o600); err != nil {
		return err
	}
	fmt.Printf("postern-cluster: API server https://%s, %d Nodes Ready in %s\n", c.APIAddr, *nodes, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(filepath.Join(*dir, "ready"), []byte("ready\n"), 0o600); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-c.API.Done():
		return fmt.Errorf("kube-apiserver exited: %s", c.API.Tail(20))
	}
	fmt.Println("postern-cluster: stopping")
	return nil
}
