//go:build conformance

// Package conformance runs the Gateway API's official conformance suite,
// sigs.k8s.io/gateway-api/conformance v1.6.3, against Postern on the test
// cluster (test/testbed): the real control plane, two Nodes whose node
// agent runs echo-basic for the suite's backends, the v1.6.3 standard
// CRDs, and Postern in cluster mode giving each Gateway an address of its
// own from --gateway-addresses. run.sh (make conformance) builds the
// binaries and the network namespace and runs it.
package conformance

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

	"github.com/postern-dev/postern/test/testbed"
)

// Where run.sh puts things in the run's network namespace.
const (
	apiIP       = "192.0.2.1"      // the API server, on lo
	gatewayPool = "203.0.113.0/24" // local on lo: the Gateways' addresses
	className   = "postern"        // the GatewayClass the suite is run for
	controller  = "postern.dev/gateway-controller"
)

// env is what run.sh hands the test.
var env struct {
	postern, node, echoBasic, placeholder, kubeDir, crds, report string
}

var posternProc *testbed.Proc

func TestMain(m *testing.M) {
	env.postern = os.Getenv("POSTERN_CONFORMANCE_BIN")
	env.node = os.Getenv("POSTERN_CONFORMANCE_NODE")
	env.echoBasic = os.Getenv("POSTERN_CONFORMANCE_ECHO_BASIC")
	env.placeholder = os.Getenv("POSTERN_CONFORMANCE_PLACEHOLDER")
	env.kubeDir = os.Getenv("POSTERN_CONFORMANCE_KUBE")
	env.crds = os.Getenv("POSTERN_CONFORMANCE_CRDS")
	env.report = os.Getenv("POSTERN_CONFORMANCE_REPORT")
	if env.postern == "" || env.node == "" || env.echoBasic == "" || env.kubeDir == "" || env.crds == "" {
		fmt.Println("conformance: run through test/conformance/run.sh (make conformance), which builds the binaries and the network namespace")
		os.Exit(1)
	}
	os.Exit(run(m))
}

// run starts the cluster and Postern, runs the tests and stops it all.
func run(m *testing.M) int {
	start := time.Now()
	c, err := testbed.Start(testbed.Options{KubeDir: env.kubeDir, APIIP: apiIP, ControlPlane: true, NetnsPrefix: os.Getenv("POSTERN_CONFORMANCE_NETNS")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: start cluster:", err)
		return 1
	}
	defer c.Stop()
	images := []string{
		"*gateway-api/echo-basic=" + env.echoBasic,
		// The suite's DNS backend serves UDPRoute tests only, but its
		// Pod must be Ready for the namespaces to be: a stand-in that
		// waits.
		"*coredns/coredns=" + env.placeholder,
	}
	for i := range 2 {
		if _, err := c.StartNode(testbed.NodeOptions{Name: fmt.Sprintf("node-%d", i+1), CIDR: testbed.NodeCIDR(i), Agent: env.node, Images: images}); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: start node:", err)
			return 1
		}
	}
	if err := c.WaitNodesReady(2 * time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	if out, err := c.Kubectl(2*time.Minute, "apply", "--server-side", "-f", env.crds); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: install the CRDs: %v\n%s", err, out)
		return 1
	}
	if out, err := c.Kubectl(time.Minute, "wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all"); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: CRDs not established: %v\n%s", err, out)
		return 1
	}
	class := fmt.Sprintf("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: %s}\nspec: {controllerName: %s}\n", className, controller)
	if out, err := kubectlStdin(c, class, "apply", "-f", "-"); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: create the GatewayClass: %v\n%s", err, out)
		return 1
	}
	kubeconfig := c.Kubeconfig
	metrics := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
	posternProc, err = testbed.StartProc("postern", env.postern, "--kubeconfig", kubeconfig, "--namespace", "default",
		"--gateway-addresses", gatewayPool, "--gateway-controller-name", controller,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", testbed.FreePort()), "--https-addr", fmt.Sprintf("127.0.0.1:%d", testbed.FreePort()),
		"--metrics-addr", metrics, "--acme-directory=", "--access-log=false", "--log-level", "info")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: start postern:", err)
		return 1
	}
	defer posternProc.Stop()
	if err := waitReady(metrics, time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: postern: %v\n%s", err, posternProc.Tail(40))
		return 1
	}
	if err := os.Setenv("KUBECONFIG", kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	fmt.Printf("conformance: cluster, CRDs and postern ready in %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- postern log tail ---\n%s\n", posternProc.Tail(80))
		fmt.Fprint(os.Stderr, c.Dump(20))
	}
	return code
}

// kubectlStdin runs kubectl on c with stdin.
func kubectlStdin(c *testbed.Cluster, stdin string, args ...string) (string, error) {
	f, err := os.CreateTemp(c.Dir, "stdin-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(stdin); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	for i, a := range args {
		if a == "-" {
			args[i] = f.Name()
		}
	}
	return c.Kubectl(time.Minute, args...)
}

// waitReady polls Postern's /readyz until it answers 200.
func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		var last string
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not 200 within %s (last: %s)", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConformance runs the suite's GATEWAY-HTTP and GATEWAY-GRPC
// profiles. The features
// are those Postern's GatewayClass lists in status.supportedFeatures
// (the suite infers them), unless -supported-features names others.
func TestConformance(t *testing.T) {
	opts := conformance.DefaultOptions(t)
	opts.GatewayClassName = className
	opts.ConformanceProfiles = []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName, suite.GatewayGRPCConformanceProfileName}
	// No namespace controller deletes the base namespaces' objects
	// reliably at the end, and the cluster is thrown away anyway.
	opts.CleanupBaseResources = false
	opts.ReportOutputPath = env.report
	opts.Implementation = confv1.Implementation{
		Organization: "postern-dev",
		Project:      "postern",
		URL:          "https://github.com/postern-dev/postern",
		Version:      version(),
		Contact:      []string{"@postern-dev/maintainers"},
	}
	// A broken build fails in minutes: the waits for status are shorter
	// than the defaults (180 s and 300 s), the traffic checks keep the
	// documented 30 s.
	opts.TimeoutConfig.GWCMustBeAccepted = 60 * time.Second
	opts.TimeoutConfig.GatewayMustHaveAddress = 60 * time.Second
	opts.TimeoutConfig.GatewayMustHaveCondition = 60 * time.Second
	opts.TimeoutConfig.NamespacesMustBeReady = 120 * time.Second
	// GatewayStaticAddresses asks for one address of the pool
	// (--gateway-addresses, run.sh) and one outside it.
	ip := ptr.To(gatewayv1.IPAddressType)
	opts.UsableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: ip, Value: "203.0.113.250"}}
	opts.UnusableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: ip, Value: "198.18.0.1"}}
	conformance.RunConformanceWithOptions(t, opts)
}

// version is Postern's version for the report: POSTERN_CONFORMANCE_VERSION
// (run.sh passes the commit), else "dev".
func version() string {
	if v := strings.TrimSpace(os.Getenv("POSTERN_CONFORMANCE_VERSION")); v != "" {
		return v
	}
	return "dev"
}
