//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/test/testbed"
)

// env is what run.sh hands the tests.
var env struct {
	postern, echo, node, kubeDir, kubectl string
}

// cluster is the cluster every test shares: the control plane (API server, etcd,
// controller manager, scheduler) and two Nodes whose Pods the node agent runs.
var cluster struct {
	*testbed.Cluster
	pki        *testbed.PKI
	apiAddr    string // 192.0.2.1:port
	kubeconfig string
}

// apiIP is where the API server listens: TEST-NET-1 on the namespace's lo.
const apiIP = "192.0.2.1"

// Images the Nodes run: Postern's own image (the chart's) and the demo backend's.
const (
	posternImage = "ghcr.io/postern-dev/postern"
	echoImage    = "ghcr.io/postern-dev/echo:e2e"
)

// Timing of the cluster's failure handling, shorter than kube's defaults so that a
// lost Node is noticed and its Pods evicted within a test's time.
const (
	nodeLease       = 8 * time.Second
	nodeGracePeriod = 10 * time.Second
	evictAfter      = 10 * time.Second
)

// TestMain starts the cluster once for the whole suite.
func TestMain(m *testing.M) {
	env.postern = os.Getenv("POSTERN_E2E_BIN")
	env.echo = os.Getenv("POSTERN_E2E_ECHO")
	env.node = os.Getenv("POSTERN_E2E_NODE")
	env.kubeDir = os.Getenv("POSTERN_E2E_KUBE")
	env.kubectl = os.Getenv("POSTERN_E2E_KUBECTL")
	if env.postern == "" || env.kubeDir == "" || env.node == "" {
		fmt.Println("e2e: run through test/e2e/run.sh (make e2e), which builds the binaries and the network namespace")
		os.Exit(1)
	}
	code := func() int {
		start := time.Now()
		c, err := testbed.Start(testbed.Options{KubeDir: env.kubeDir, APIIP: apiIP, ControlPlane: true,
			NodeMonitorGracePeriod: nodeGracePeriod, EvictAfter: evictAfter, NetnsPrefix: os.Getenv("POSTERN_E2E_NETNS")})
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
			return 1
		}
		defer c.Stop()
		cluster.Cluster, cluster.pki, cluster.apiAddr, cluster.kubeconfig = c, c.PKI, c.APIAddr, c.Kubeconfig
		for i := range 2 {
			if _, err := c.StartNode(testbed.NodeOptions{Name: fmt.Sprintf("node-%d", i+1), CIDR: testbed.NodeCIDR(i),
				Agent: env.node, LeaseDuration: nodeLease,
				Images: []string{"*postern-dev/postern=" + env.postern, "*postern-dev/echo=" + env.echo}}); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: start node:", err)
				return 1
			}
		}
		if err := c.WaitNodesReady(2 * time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			fmt.Fprint(os.Stderr, c.Dump(40))
			return 1
		}
		fmt.Printf("e2e: cluster (control plane and 2 Nodes) ready in %s\n", time.Since(start).Round(time.Millisecond))
		code := m.Run()
		if code != 0 {
			fmt.Fprint(os.Stderr, c.Dump(40))
		}
		return code
	}()
	os.Exit(code)
}

// kubeconfigFor writes a kubeconfig for the admin, impersonating as when
// it is not empty ("system:serviceaccount:ns:name").
func kubeconfigFor(as string) string { return cluster.KubeconfigFor(as) }

// stopAPIServer stops the API server (etcd keeps running).
func stopAPIServer(t testing.TB) {
	t.Helper()
	cluster.StopAPIServer()
}

// startAPIServer starts it again on the same address, certificates and etcd.
func startAPIServer(t testing.TB) {
	t.Helper()
	if err := cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitAPIServer(120 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// proc is a process a test started.
type proc = testbed.Proc

func startProc(name, bin string, args ...string) (*proc, error) {
	return testbed.StartProc(name, bin, args...)
}

func lastLines(s string, n int) string { return testbed.LastLines(s, n) }

func freePortN() int { return testbed.FreePort() }

// kubectl runs kubectl as the admin and returns its output; failure fails t.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := kubectlErr(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func kubectlErr(args ...string) (string, error) {
	return kubectlStdin("", args...)
}

func kubectlStdin(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.kubectl, append([]string{"--kubeconfig", cluster.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// apply runs kubectl apply on a YAML document set.
func apply(t testing.TB, yaml string) {
	t.Helper()
	if out, err := kubectlStdin(yaml, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n--- input ---\n%s", err, out, yaml)
	}
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t testing.TB, name string) string {
	t.Helper()
	apply(t, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name))
	t.Cleanup(func() { _, _ = kubectlErr("delete", "namespace", name, "--wait=false") })
	return name
}

// startEcho starts the demo backend on addrs and waits until it answers.
func startEcho(t testing.TB, name string, addrs ...string) *proc {
	t.Helper()
	p, err := startProc("echo "+name, env.echo, "--name", name, "--listen", strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for _, a := range addrs {
		eventually(t, 10*time.Second, func() error {
			c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", a)
			if err != nil {
				return err
			}
			return c.Close()
		})
	}
	return p
}

// Postern is one running postern process.
type Postern struct {
	*proc
	HTTPAddr, HTTPSAddr, MetricsAddr string
}

// startPostern runs bin/postern against the test cluster with args added,
// and waits for /readyz.
func startPostern(t testing.TB, args ...string) *Postern {
	t.Helper()
	p := startPosternNoWait(t, args...)
	eventually(t, 60*time.Second, func() error {
		if p.Exited() {
			t.Fatalf("postern exited:\n%s", p.Tail(30))
		}
		code, body := httpGet(p.MetricsAddr, "", "/readyz")
		if code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	return p
}

func startPosternNoWait(t testing.TB, args ...string) *Postern {
	t.Helper()
	p := &Postern{
		HTTPAddr:    fmt.Sprintf("127.0.0.1:%d", freePortN()),
		HTTPSAddr:   fmt.Sprintf("127.0.0.1:%d", freePortN()),
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", freePortN()),
	}
	full := append([]string{"--kubeconfig", cluster.kubeconfig, "--http-addr", p.HTTPAddr,
		"--https-addr", p.HTTPSAddr, "--metrics-addr", p.MetricsAddr, "--namespace", "default", "--log-level", "info"}, args...)
	var err error
	p.proc, err = startProc("postern", env.postern, full...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- postern %s log tail ---\n%s", p.HTTPAddr, p.Tail(60))
		}
	})
	return p
}

// get sends GET http://host/path through p and returns status and body.
func (p *Postern) get(host, path string) (int, string) { return httpGet(p.HTTPAddr, host, path) }

func httpGet(addr, host, path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}

// expect polls until GET host/path through p answers want and, when
// backend is not empty, the body names that backend.
func (p *Postern) expect(t testing.TB, host, path string, want int, backend string) {
	t.Helper()
	p.expectWithin(t, 20*time.Second, host, path, want, backend)
}

// expectWithin is expect with its own time limit.
func (p *Postern) expectWithin(t testing.TB, timeout time.Duration, host, path string, want int, backend string) {
	t.Helper()
	eventually(t, timeout, func() error {
		code, body := p.get(host, path)
		if code != want || (backend != "" && !servedBy(body, backend)) {
			return fmt.Errorf("GET %s%s = %d %q, want %d from %q", host, path, code, lastLines(body, 2), want, backend)
		}
		return nil
	})
}

// servedBy says whether an echo response came from the backend name: the process of
// that name, or a Pod of the Deployment of that name (<name>-<hash>-<suffix>).
func servedBy(body, name string) bool {
	rest, ok := strings.CutPrefix(body, "backend: "+name)
	return ok && podSuffix.MatchString(rest)
}

var podSuffix = regexp.MustCompile(`^(-[a-z0-9]+-[a-z0-9]+)? `)

// eventually polls f until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
