//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// env is what run.sh hands the tests.
var env struct {
	postern, echo, kubeDir, kubectl string
}

// cluster is the API server and etcd every test shares.
var cluster struct {
	dir        string
	pki        *pki
	etcdURL    string
	apiAddr    string // 192.0.2.1:port
	kubeconfig string
	etcd       *proc
	api        *proc
}

// apiIP is where the API server listens: TEST-NET-1 on the namespace's lo.
const apiIP = "192.0.2.1"

// TestMain starts etcd and kube-apiserver once for the whole suite.
func TestMain(m *testing.M) {
	env.postern = os.Getenv("POSTERN_E2E_BIN")
	env.echo = os.Getenv("POSTERN_E2E_ECHO")
	env.kubeDir = os.Getenv("POSTERN_E2E_KUBE")
	env.kubectl = os.Getenv("POSTERN_E2E_KUBECTL")
	if env.postern == "" || env.kubeDir == "" {
		fmt.Println("e2e: run through test/e2e/run.sh (make e2e), which builds the binaries and the network namespace")
		os.Exit(1)
	}
	code := func() int {
		start := time.Now()
		if err := startCluster(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
			dumpCluster()
			stopCluster()
			return 1
		}
		fmt.Printf("e2e: kube-apiserver and etcd ready in %s\n", time.Since(start).Round(time.Millisecond))
		defer stopCluster()
		return m.Run()
	}()
	os.Exit(code)
}

func startCluster() error {
	dir, err := os.MkdirTemp("", "postern-e2e-")
	if err != nil {
		return err
	}
	cluster.dir = dir
	if cluster.pki, err = newPKI(dir, net.ParseIP(apiIP), net.ParseIP("127.0.0.1")); err != nil {
		return err
	}
	clientPort, peerPort, apiPort := freePortN(), freePortN(), freePortN()
	cluster.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cluster.etcd, err = startProc("etcd", filepath.Join(env.kubeDir, "etcd"),
		"--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", cluster.etcdURL, "--advertise-client-urls", cluster.etcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer, "--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	cluster.apiAddr = fmt.Sprintf("%s:%d", apiIP, apiPort)
	if err := startAPIServerProc(); err != nil {
		return err
	}
	cluster.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(cluster.kubeconfig, []byte(kubeconfigFor("")), 0o600); err != nil {
		return err
	}
	return waitAPIServer(120 * time.Second)
}

func startAPIServerProc() error {
	_, port, _ := net.SplitHostPort(cluster.apiAddr)
	p := cluster.pki
	var err error
	cluster.api, err = startProc("kube-apiserver", filepath.Join(env.kubeDir, "kube-apiserver"),
		"--etcd-servers", cluster.etcdURL,
		"--bind-address", apiIP, "--advertise-address", apiIP, "--secure-port", port,
		"--tls-cert-file", p.serverCert, "--tls-private-key-file", p.serverKey,
		"--client-ca-file", p.caCert,
		"--service-account-key-file", p.saPub, "--service-account-signing-key-file", p.saKey,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--cert-dir", filepath.Join(cluster.dir, "apiserver-certs"),
		"--enable-priority-and-fairness=false",
		"--event-ttl", "1h",
		"-v", "0")
	return err
}

// kubeconfigFor writes a kubeconfig for the admin, impersonating as when
// it is not empty ("system:serviceaccount:ns:name").
func kubeconfigFor(as string) string {
	p := cluster.pki
	imp := ""
	if as != "" {
		imp = "\n    as: " + as
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://%s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s%s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, cluster.apiAddr, p.caCert, p.adminCert, p.adminKey, imp)
}

func waitAPIServer(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, env.kubectl, "--kubeconfig", cluster.kubeconfig, "get", "--raw", "/readyz").CombinedOutput()
		cancel()
		if err == nil && strings.TrimSpace(string(out)) == "ok" {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, lastLines(string(out), 3))
		if cluster.api.exited() {
			return fmt.Errorf("kube-apiserver exited: %s", cluster.api.tail(30))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready within %s: %w", timeout, last)
}

func stopCluster() {
	if cluster.api != nil {
		cluster.api.stop()
	}
	if cluster.etcd != nil {
		cluster.etcd.stop()
	}
	if cluster.dir != "" {
		_ = os.RemoveAll(cluster.dir)
	}
}

func dumpCluster() {
	for _, p := range []*proc{cluster.etcd, cluster.api} {
		if p != nil {
			fmt.Fprintf(os.Stderr, "--- %s log tail ---\n%s\n", p.name, p.tail(40))
		}
	}
}

// stopAPIServer stops the API server (etcd keeps running).
func stopAPIServer(t testing.TB) {
	t.Helper()
	cluster.api.stop()
}

// startAPIServer starts it again on the same address, certificates and etcd.
func startAPIServer(t testing.TB) {
	t.Helper()
	if err := startAPIServerProc(); err != nil {
		t.Fatal(err)
	}
	if err := waitAPIServer(120 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// proc is a process the tests started; its output goes to a buffer that a
// failing test prints.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(name, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	// Processes live until stop or kill, not a context: their owner decides.
	p.cmd = exec.Command(bin, args...) //nolint:noctx // lifetime managed by stop/kill
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) tail(n int) string { return lastLines(p.out.String(), n) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePortN() int {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

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
	t.Cleanup(p.stop)
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
		if p.exited() {
			t.Fatalf("postern exited:\n%s", p.tail(30))
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
		p.stop()
		if t.Failed() {
			t.Logf("--- postern %s log tail ---\n%s", p.HTTPAddr, p.tail(60))
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
		if code != want || (backend != "" && !strings.HasPrefix(body, "backend: "+backend+" ")) {
			return fmt.Errorf("GET %s%s = %d %q, want %d from %q", host, path, code, lastLines(body, 2), want, backend)
		}
		return nil
	})
}

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
