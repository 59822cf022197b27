// Package testbed runs a whole local Kubernetes cluster for Postern's tests and for
// `make cluster`: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
// from the pinned k8s.io/kubernetes module (test/kube), and Nodes whose Pods the node
// agent (test/node) runs as processes, each in a network namespace of its own.
//
// Everything listens on TEST-NET addresses inside the network namespace the caller
// runs in (test/e2e/run.sh and test/testbed/cluster.sh make it): the API server on
// APIIP, each Node on a bridge of its own with its Pods' addresses (NodeCIDR).
package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options says what to run.
type Options struct {
	// Dir holds the cluster's state; a fresh folder is made when it is empty.
	Dir string
	// KubeDir holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
	// kubectl (test/kube/build.sh prints it).
	KubeDir string
	// APIIP is the API server's address; it must be local (on lo).
	APIIP string
	// APIPort is the API server's port; 0 picks a free one.
	APIPort int
	// ControlPlane runs the controller manager and the scheduler too. Without it the
	// cluster is an API server and etcd only (objects, no Pods).
	ControlPlane bool
	// NodeMonitorGracePeriod is how long a Node may go without renewing its Lease
	// before the node lifecycle controller marks it NotReady (kube's default is 50 s).
	NodeMonitorGracePeriod time.Duration
	// EvictAfter is how long Pods tolerate a NotReady or unreachable Node before they
	// are evicted: the API server's default toleration (kube's default is 300 s).
	EvictAfter time.Duration
	// Log, when set, is where every component's output is also written, one file each.
	Log bool
	// NetnsPrefix starts the names of the Pods' network namespaces, which are the
	// machine's: the caller's own network namespace name keeps them apart from any
	// other run's, and tells its clean-up what to remove (default postern-<pid>).
	NetnsPrefix string
}

// Cluster is a running control plane.
type Cluster struct {
	Opts       Options
	Dir        string
	PKI        *PKI
	EtcdURL    string
	APIAddr    string // APIIP:port
	Kubeconfig string // the admin's (system:masters)

	Etcd, API *Proc
	// The controller manager and the scheduler are restarted when they exit, as
	// the kubelet restarts a control plane's static Pods: both exit on purpose
	// when the API server goes away while they start.
	ControllerManager, Scheduler *Supervised
	nodes                        []*Node
}

// Start runs etcd and the API server, then (with ControlPlane) the controller manager
// and the scheduler, and waits until the API server is ready.
func Start(o Options) (*Cluster, error) {
	if o.APIIP == "" {
		return nil, errors.New("testbed: APIIP is required")
	}
	c := &Cluster{Opts: o, Dir: o.Dir}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "postern-testbed-")
		if err != nil {
			return nil, err
		}
		c.Dir = dir
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	var err error
	// 10.96.0.1 is the kubernetes Service's ClusterIP (--service-cluster-ip-range).
	if c.PKI, err = NewPKI(c.Dir, net.ParseIP(o.APIIP), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")); err != nil {
		return nil, err
	}
	clientPort, peerPort := FreePort(), FreePort()
	apiPort := o.APIPort
	if apiPort == 0 {
		apiPort = FreePort()
	}
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	c.Etcd, err = c.start("etcd", filepath.Join(o.KubeDir, "etcd"),
		"--name", "testbed", "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", c.EtcdURL, "--advertise-client-urls", c.EtcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "testbed="+peer, "--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	c.APIAddr = net.JoinHostPort(o.APIIP, strconv.Itoa(apiPort))
	if err := c.StartAPIServer(); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(c.KubeconfigFor("")), 0o600); err != nil {
		return nil, err
	}
	if err := c.WaitAPIServer(120 * time.Second); err != nil {
		return nil, err
	}
	if o.ControlPlane {
		if err := c.startControllers(); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// start runs a component, its output also in Dir/logs/<name>.log with Log.
func (c *Cluster) start(name, bin string, args ...string) (*Proc, error) {
	if !c.Opts.Log {
		return StartProc(name, bin, args...)
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p, err := StartProcTo(f, name, bin, args...)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	go func() {
		<-p.Done()
		_ = f.Close()
	}()
	return p, nil
}

// StartAPIServer starts kube-apiserver on APIAddr, with the certificates and etcd it
// had (again, after StopAPIServer).
func (c *Cluster) StartAPIServer() error {
	_, port, _ := net.SplitHostPort(c.APIAddr)
	p := c.PKI
	kubeletCert, kubeletKey, err := p.Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers", c.EtcdURL,
		"--bind-address", c.Opts.APIIP, "--advertise-address", c.Opts.APIIP, "--secure-port", port,
		"--tls-cert-file", p.ServerCert, "--tls-private-key-file", p.ServerKey,
		"--client-ca-file", p.CACert,
		"--service-account-key-file", p.SAPub, "--service-account-signing-key-file", p.SAKey,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		// The kubelets' identities (system:node:<name>) are held to their own Node and
		// Pods, as in a real cluster.
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--cert-dir", filepath.Join(c.Dir, "apiserver-certs"),
		"--enable-priority-and-fairness=false",
		"--event-ttl", "1h",
		// Logs and the node proxy: the API server calls the node agents with a client
		// certificate and checks theirs.
		"--kubelet-client-certificate", kubeletCert, "--kubelet-client-key", kubeletKey,
		"--kubelet-certificate-authority", p.CACert,
		"--kubelet-preferred-address-types", "InternalIP",
		"-v", "0",
	}
	if c.Opts.EvictAfter > 0 {
		s := strconv.Itoa(int(c.Opts.EvictAfter / time.Second))
		args = append(args, "--default-not-ready-toleration-seconds", s, "--default-unreachable-toleration-seconds", s)
	}
	c.API, err = c.start("kube-apiserver", filepath.Join(c.Opts.KubeDir, "kube-apiserver"), args...)
	return err
}

// StopAPIServer stops the API server; etcd and everything else keep running.
func (c *Cluster) StopAPIServer() { c.API.Stop() }

// startControllers runs the controller manager (every default controller, each with
// its own service account, as kubeadm's) and the scheduler, each with a client
// certificate of the identity the real ones have.
func (c *Cluster) startControllers() error {
	o := c.Opts
	kcm, err := c.componentKubeconfig("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig", kcm, "--authentication-kubeconfig", kcm, "--authorization-kubeconfig", kcm,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(FreePort()),
		"--cert-dir", filepath.Join(c.Dir, "kcm-certs"),
		// Leader election would make the controller manager exit when the API server
		// is away for longer than its renew deadline, and the outage tests do that.
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", c.PKI.SAKey,
		"--root-ca-file", c.PKI.CACert,
		"--cluster-signing-cert-file", c.PKI.CACert, "--cluster-signing-key-file", c.PKI.CAKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--cluster-name", "testbed",
		"--node-monitor-period", "1s",
		"-v", "0",
	}
	if o.NodeMonitorGracePeriod > 0 {
		args = append(args, "--node-monitor-grace-period", o.NodeMonitorGracePeriod.String())
	}
	if c.ControllerManager, err = c.supervise("kube-controller-manager", filepath.Join(o.KubeDir, "kube-controller-manager"), args...); err != nil {
		return err
	}
	sched, err := c.componentKubeconfig("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	c.Scheduler, err = c.supervise("kube-scheduler", filepath.Join(o.KubeDir, "kube-scheduler"),
		"--kubeconfig", sched, "--authentication-kubeconfig", sched, "--authorization-kubeconfig", sched,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(FreePort()),
		"--leader-elect=false", "-v", "0")
	return err
}

// componentKubeconfig issues a client certificate for user (in groups) and writes a
// kubeconfig that uses it.
func (c *Cluster) componentKubeconfig(name, user string, groups ...string) (string, error) {
	cert, key, err := c.PKI.Client(name, user, groups...)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, os.WriteFile(path, []byte(c.kubeconfig(cert, key, "")), 0o600)
}

// KubeconfigFor is a kubeconfig for the admin, impersonating as when it is not empty
// ("system:serviceaccount:ns:name").
func (c *Cluster) KubeconfigFor(as string) string {
	return c.kubeconfig(c.PKI.AdminCert, c.PKI.AdminKey, as)
}

func (c *Cluster) kubeconfig(cert, key, as string) string {
	imp := ""
	if as != "" {
		imp = "\n    as: " + as
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://%s
    certificate-authority: %s
users:
- name: user
  user:
    client-certificate: %s
    client-key: %s%s
contexts:
- name: testbed
  context: {cluster: testbed, user: user}
current-context: testbed
`, c.APIAddr, c.PKI.CACert, cert, key, imp)
}

// WaitAPIServer waits until /readyz answers ok.
func (c *Cluster) WaitAPIServer(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		out, err := c.Kubectl(10*time.Second, "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, LastLines(out, 3))
		if c.API.Exited() {
			return fmt.Errorf("kube-apiserver exited: %s", c.API.Tail(30))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready within %s: %w", timeout, last)
}

// Kubectl runs kubectl as the admin.
func (c *Cluster) Kubectl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(c.Opts.KubeDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// Stop stops the Nodes, then the control plane, and removes Dir when Start made it.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
	for _, s := range []*Supervised{c.Scheduler, c.ControllerManager} {
		if s != nil {
			s.Stop()
		}
	}
	for _, p := range []*Proc{c.API, c.Etcd} {
		if p != nil {
			p.Stop()
		}
	}
	if c.Opts.Dir == "" && c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// Dump is the last lines of every component's output, for a failed start or test.
func (c *Cluster) Dump(lines int) string {
	var b strings.Builder
	procs := []*Proc{c.Etcd, c.API}
	for _, s := range []*Supervised{c.ControllerManager, c.Scheduler} {
		if s != nil {
			procs = append(procs, s.Current())
		}
	}
	for _, p := range procs {
		if p != nil {
			fmt.Fprintf(&b, "--- %s log tail ---\n%s\n", p.Name, p.Tail(lines))
		}
	}
	for _, n := range c.nodes {
		if n.Proc != nil {
			fmt.Fprintf(&b, "--- node %s log tail ---\n%s\n", n.Name, n.Proc.Tail(lines))
		}
	}
	return b.String()
}

// FreePort returns a TCP port free on 127.0.0.1 now, another on each
// call, below the kernel's ephemeral range (32768 and up by default): an
// ephemeral port found free can be taken by an outgoing connection before
// the process it is meant for binds it ("address already in use"), one
// out of that range cannot. Each process starts at a base of its own, so
// that two test binaries in one network namespace do not take turns on
// the same ports.
func FreePort() int {
	var lc net.ListenConfig
	for range portSpan {
		p := freePortBase + int(nextPort.Add(1))%portSpan
		ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use
		}
		ln.Close()
		return p
	}
	panic("no free port in 20000-32767")
}

// The ports FreePort gives: portSpan of them from freePortBase, starting
// at a place of the process's own.
const (
	freePortBase = 20000
	portSpan     = 12768
)

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(int64(os.Getpid()%64) * 199)
	return &n
}()

// firstHost is the first address of a prefix (a Node's own address on its bridge).
func firstHost(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// Supervised is a component kept running: started again a second after it exits.
type Supervised struct {
	mu       sync.Mutex
	cur      *Proc
	restarts int
	stopping bool
	done     chan struct{}
}

func (c *Cluster) supervise(name, bin string, args ...string) (*Supervised, error) {
	p, err := c.start(name, bin, args...)
	if err != nil {
		return nil, err
	}
	s := &Supervised{cur: p, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			p := s.cur
			s.mu.Unlock()
			<-p.Done()
			time.Sleep(time.Second)
			s.mu.Lock()
			if s.stopping {
				s.mu.Unlock()
				return
			}
			np, err := c.start(name, bin, args...)
			if err != nil {
				s.mu.Unlock()
				return
			}
			_, _ = fmt.Fprintf(np.Out, "testbed: %s restarted after it exited: %s\n", name, p.Tail(3))
			s.cur, s.restarts = np, s.restarts+1
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Current is the running process.
func (s *Supervised) Current() *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Restarts counts the restarts so far.
func (s *Supervised) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop stops the component for good.
func (s *Supervised) Stop() {
	s.mu.Lock()
	s.stopping = true
	p := s.cur
	s.mu.Unlock()
	p.Stop()
	<-s.done
}
