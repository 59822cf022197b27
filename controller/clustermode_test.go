package controller

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// notInCluster makes rest.InClusterConfig answer ErrNotInCluster and points
// $KUBECONFIG (and ~/.kube/config) at kubeconfig, which may not exist.
func notInCluster(t *testing.T, kubeconfig string) {
	t.Helper()
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", kubeconfig)
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	body := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "` + server + `"}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRestConfig(t *testing.T) {
	const server = "https://192.0.2.1:6443"
	notInCluster(t, filepath.Join(t.TempDir(), "missing"))
	for _, tc := range []struct {
		name       string
		flag       string
		kubeconfig string // $KUBECONFIG; "" leaves notInCluster's missing file
		wantHost   string
		wantErr    string // prefix of the error
	}{
		{name: "flag", flag: writeKubeconfig(t, server), wantHost: server},
		{name: "flag missing file", flag: "/nonexistent/kubeconfig", wantErr: "--kubeconfig /nonexistent/kubeconfig: "},
		{name: "env", kubeconfig: writeKubeconfig(t, server), wantHost: server},
		{name: "nothing", wantErr: "no cluster to watch (not in a cluster, no --kubeconfig, no usable $KUBECONFIG; for standalone mode pass --manifests DIR): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kubeconfig != "" {
				t.Setenv("KUBECONFIG", tc.kubeconfig)
			}
			rc, err := restConfig(tc.flag)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("restConfig(%q) error = %v, want one starting %q", tc.flag, err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("restConfig(%q): %v", tc.flag, err)
			case rc.Host != tc.wantHost:
				t.Fatalf("restConfig(%q).Host = %q, want %q", tc.flag, rc.Host, tc.wantHost)
			}
		})
	}
}

func TestOwnNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	if got := ownNamespace("from-flag"); got != "from-flag" {
		t.Errorf("ownNamespace with the flag set = %q, want from-flag", got)
	}
	if got := ownNamespace(""); got != "from-env" {
		t.Errorf("ownNamespace with $POD_NAMESPACE set = %q, want from-env", got)
	}
	t.Setenv("POD_NAMESPACE", "")
	if _, err := os.Stat(serviceAccountNamespace); err == nil {
		t.Skip("running in a Pod: the service account names the namespace")
	}
	if got := ownNamespace(""); got != "default" {
		t.Errorf("ownNamespace with nothing set = %q, want default", got)
	}
}

func TestIdentityIsUniquePerStart(t *testing.T) {
	t.Setenv("POD_NAME", "postern-abc")
	a, b := identity(), identity()
	if !strings.HasPrefix(a, "postern-abc_") || !strings.HasPrefix(b, "postern-abc_") {
		t.Fatalf("identity() = %q, %q; want the pod name and a suffix", a, b)
	}
	if a == b {
		t.Fatalf("identity() gave %q twice; a restarted pod would inherit its predecessor's lease", a)
	}
}

// TestConnect connects to an address nothing listens on: Connect sends
// nothing to the API server, so it succeeds.
func TestConnect(t *testing.T) {
	const server = "https://192.0.2.1:6443"
	notInCluster(t, writeKubeconfig(t, server))
	// A no-op logger: Connect hands it to klog for good, and a test logger
	// must not outlive its test.
	c, err := Connect(ConnectOptions{Namespace: "postern-system", ElectionID: "lease"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if c.host != server || c.ns != "postern-system" {
		t.Errorf("Connect: host %q, namespace %q; want %q, postern-system", c.host, c.ns, server)
	}
	if c.Leading() {
		t.Error("Leading() before Run = true")
	}
	if c.acmeCache != nil {
		t.Error("Connect made an ACME cache nobody asked for")
	}
	if first := c.ACMECache(); first == nil || c.ACMECache() != first {
		t.Error("ACMECache() does not return one cache, made once")
	}
}
