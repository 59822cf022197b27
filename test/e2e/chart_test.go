//go:build e2e

package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/postern-dev/postern/test/chart"
)

// The chart's end-to-end checks: every CI values file rendered and sent to
// the real API server with a server-side dry run, the chart installed,
// upgraded and uninstalled with helm, and postern run as the chart's
// ServiceAccount (impersonated; the API server runs in RBAC mode) to show
// that the chart's RBAC is enough, and that every rule of it is needed.

//go:embed testdata/servicemonitor-crd.yaml
var serviceMonitorCRD string

// chartHelm returns helm for the test cluster, with its state in a folder
// of the test's, and the chart's folder.
func chartHelm(t *testing.T) (chart.Helm, string) {
	t.Helper()
	bin, dir := os.Getenv("POSTERN_E2E_HELM"), os.Getenv("POSTERN_E2E_CHART")
	if bin == "" || dir == "" {
		t.Fatal("POSTERN_E2E_HELM and POSTERN_E2E_CHART are unset: run the suite through test/e2e/run.sh")
	}
	return chart.Helm{Bin: bin, Home: t.TempDir(), Kubeconfig: cluster.kubeconfig}, dir
}

func helmCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// installChart installs the chart as release into ns with the extra helm
// arguments, uninstalls it when the test ends, and returns what helm
// installed.
func installChart(t *testing.T, h chart.Helm, dir, release, ns string, args ...string) *chart.Manifest {
	t.Helper()
	if _, err := h.Run(helmCtx(t), append([]string{"install", release, dir, "--namespace", ns}, args...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = h.Run(ctx, "uninstall", release, "--namespace", ns)
	})
	out, err := h.Run(helmCtx(t), "get", "manifest", release, "--namespace", ns)
	if err != nil {
		t.Fatal(err)
	}
	m, err := chart.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// installChartNoPods installs the chart with no replicas, for the tests that run
// postern as its Pods would (startAsChart), so no Pod of the chart's competes with
// them for the leader's lease.
func installChartNoPods(t *testing.T, h chart.Helm, dir, release, ns string, args ...string) *chart.Manifest {
	t.Helper()
	return installChart(t, h, dir, release, ns, append(args, "--set", "replicaCount=0")...)
}

// startAsChart runs postern as a pod of the chart's Deployment in ns would
// run: with its arguments (but listeners on this test's ports), as its
// ServiceAccount (the admin's kubeconfig impersonating it), in ns (what
// POD_NAMESPACE says in a pod). With wait it waits for /readyz.
func startAsChart(t *testing.T, m *chart.Manifest, ns string, wait bool) *Postern {
	t.Helper()
	args, err := m.Args()
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := m.PodTemplate()
	kc := filepath.Join(t.TempDir(), "serviceaccount.kubeconfig")
	user := fmt.Sprintf("system:serviceaccount:%s:%s", ns, pt.Spec.ServiceAccountName)
	if err := os.WriteFile(kc, []byte(kubeconfigFor(user)), 0o600); err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "http-addr" || name == "https-addr" || name == "metrics-addr" {
			continue // the harness gives each process free ports
		}
		keep = append(keep, a)
	}
	keep = append(keep, "--kubeconfig", kc, "--namespace", ns)
	if wait {
		return startPostern(t, keep...)
	}
	return startPosternNoWait(t, keep...)
}

// fullname is the name of the chart's objects in m (its ServiceAccount,
// Service, Deployment, ClusterRole and own Role).
func fullname(t *testing.T, m *chart.Manifest) string {
	t.Helper()
	pt, err := m.PodTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return pt.Spec.ServiceAccountName
}

// logLine waits for a line of p's log holding every one of words (case
// insensitive) and returns it.
func logLine(t *testing.T, p *Postern, timeout time.Duration, words ...string) string {
	t.Helper()
	var found string
	eventually(t, timeout, func() error {
		for _, l := range strings.Split(p.Out.String(), "\n") {
			low := strings.ToLower(l)
			if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(low, strings.ToLower(w)) }) {
				found = l
				return nil
			}
		}
		return fmt.Errorf("no log line with %q in:\n%s", words, p.Tail(15))
	})
	return found
}

// noForbidden fails t if any of ps logged a forbidden error: a rule the
// chart lacks.
func noForbidden(t *testing.T, ps ...*Postern) {
	t.Helper()
	for _, p := range ps {
		for _, l := range strings.Split(p.Out.String(), "\n") {
			if strings.Contains(strings.ToLower(l), "forbidden") {
				t.Errorf("postern was refused something the chart should grant:\n%s", l)
			}
		}
	}
}

// canI asks the API server whether the ServiceAccount ns/sa may do verb on
// resource (kubectl auth can-i).
func canI(t *testing.T, ns, sa string, args ...string) bool {
	t.Helper()
	out, err := kubectlErr(append([]string{"auth", "can-i", "--as", "system:serviceaccount:" + ns + ":" + sa}, args...)...)
	// The answer is the last line, after any warning.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	switch strings.TrimSpace(lines[len(lines)-1]) {
	case "yes":
		return true
	case "no":
		return false
	}
	t.Fatalf("kubectl auth can-i %s: %v\n%s", strings.Join(args, " "), err, out)
	return false
}

func valuesFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s: %v", dir, err)
	}
	out := make(map[string]string)
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

// TestChartDryRun sends the objects each CI values file renders to the
// API server as a server-side dry run: the server's own schema and
// admission (strict field validation, Pod Security "restricted" on the
// release namespace) accept all of them. The ServiceMonitor is checked
// against a cut-down copy of the Prometheus Operator's CRD.
func TestChartDryRun(t *testing.T) {
	h, dir := chartHelm(t)
	ns := "chart-dryrun"
	apply(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n  labels:\n"+
		"    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n")
	t.Cleanup(func() { _, _ = kubectlErr("delete", "namespace", ns, "--wait=false") })
	// Namespaces the namespaced values file names.
	for _, n := range []string{"team-a", "team-b", "certs", "edge"} {
		namespace(t, n)
	}
	apply(t, serviceMonitorCRD)
	t.Cleanup(func() { _, _ = kubectlErr("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false") })
	kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com")
	installGatewayCRDs(t) // the GatewayClass of ci/gateway-values.yaml

	files := valuesFiles(t, dir)
	for _, name := range []string{"default", "daemonset", "namespaced", "acme", "servicemonitor", "gateway"} {
		if files[name] == "" {
			t.Errorf("ci/%s-values.yaml is missing", name)
		}
	}
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			m, err := h.Template(helmCtx(t), dir, "postern", ns, "-f", file)
			if err != nil {
				t.Fatal(err)
			}
			out, err := kubectlStdin(m.YAML, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			if err != nil {
				t.Fatalf("the API server refused the chart's objects: %v\n%s", err, out)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(m.Objects) {
				t.Errorf("%d objects accepted, %d rendered (%v):\n%s", n, len(m.Objects), m.Kinds(), out)
			}
			var warnings []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "Warning:") {
					warnings = append(warnings, l)
				}
			}
			// Host ports are the one thing "restricted" (and even
			// "baseline") forbids; the DaemonSet file asks for them.
			if name == "daemonset" {
				if len(warnings) != 1 || !strings.Contains(warnings[0], `would violate PodSecurity "restricted:latest": hostPort`) {
					t.Errorf("want exactly the hostPort Pod Security warning, got %q", warnings)
				}
				return
			}
			if len(warnings) > 0 {
				t.Errorf("the API server warned:\n%s", strings.Join(warnings, "\n"))
			}
		})
	}
}

// TestChartInstall: helm install with the defaults (as the README shows),
// then the objects as the API server holds them, the ServiceAccount's
// permissions, an upgrade, bad values refused before anything is created,
// and an uninstall that leaves nothing behind.
func TestChartInstall(t *testing.T) {
	h, dir := chartHelm(t)
	ns := namespace(t, "chart-install")
	m := installChart(t, h, dir, "postern", ns)

	checkInstalledObjects(t, m)
	checkServerFilledIn(t, ns)
	checkInstallPermissions(t, ns)
	checkUpgrade(t, h, dir, ns)
	checkBadValuesRefused(t, h, dir, ns)
	checkUninstall(t, h, ns)
}

// checkInstalledObjects: every object the chart rendered exists, and they
// are the kinds an install with the defaults makes.
func checkInstalledObjects(t *testing.T, m *chart.Manifest) {
	t.Helper()
	want := m.Kinds()
	for _, o := range m.Objects {
		kind := o.GetObjectKind().GroupVersionKind()
		meta := o.(interface {
			GetNamespace() string
			GetName() string
		})
		args := []string{"get", strings.ToLower(kind.Kind) + "." + kind.Group, meta.GetName(), "-o", "name"}
		if kind.Group == "" {
			args[1] = strings.ToLower(kind.Kind)
		}
		if meta.GetNamespace() != "" {
			args = append(args, "--namespace", meta.GetNamespace())
		}
		if out, err := kubectlErr(args...); err != nil {
			t.Errorf("%s %s/%s was not created: %s", kind.Kind, meta.GetNamespace(), meta.GetName(), out)
		}
	}
	kinds := map[string]int{}
	for _, k := range want {
		kinds[strings.Fields(k)[0]]++
	}
	wantKinds := map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
		"Service": 1, "Deployment": 1, "IngressClass": 1, "PodDisruptionBudget": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(wantKinds) {
		t.Errorf("installed %v, want %v", kinds, wantKinds)
	}
}

// checkServerFilledIn: what the API server filled in: a cluster IP and
// node ports for the LoadBalancer Service; and the IngressClass's
// controller.
func checkServerFilledIn(t *testing.T, ns string) {
	t.Helper()
	var svc corev1.Service
	if err := json.Unmarshal([]byte(kubectl(t, "get", "service", "postern", "--namespace", ns, "-o", "json")), &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ClusterIP == "" {
		t.Errorf("Service = %s with cluster IP %q", svc.Spec.Type, svc.Spec.ClusterIP)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			t.Errorf("Service port %s got no node port", p.Name)
		}
	}
	var ic networkingv1.IngressClass
	if err := json.Unmarshal([]byte(kubectl(t, "get", "ingressclass", "postern", "-o", "json")), &ic); err != nil {
		t.Fatal(err)
	}
	if ic.Spec.Controller != "postern.dev/ingress-controller" {
		t.Errorf("IngressClass controller = %q", ic.Spec.Controller)
	}
}

// checkInstallPermissions: the ServiceAccount may do what Postern does, and
// nothing else.
func checkInstallPermissions(t *testing.T, ns string) {
	t.Helper()
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"list", "ingresses.networking.k8s.io", "--all-namespaces"}, true},
		{[]string{"watch", "endpointslices.discovery.k8s.io", "--all-namespaces"}, true},
		{[]string{"list", "secrets", "--all-namespaces"}, true},
		{[]string{"watch", "configmaps", "--all-namespaces"}, true},
		{[]string{"get", "configmaps", "--namespace", ns}, false},
		{[]string{"update", "configmaps", "--namespace", "default"}, false},
		{[]string{"update", "ingresses.networking.k8s.io", "--subresource=status", "--namespace", "default"}, true},
		{[]string{"create", "events.events.k8s.io", "--namespace", "default"}, true},
		{[]string{"update", "leases.coordination.k8s.io/postern-leader", "--namespace", ns}, true},
		{[]string{"get", "secrets", "--namespace", ns}, false},
		{[]string{"create", "secrets", "--namespace", ns}, false},
		{[]string{"update", "ingresses.networking.k8s.io", "--namespace", "default"}, false},
		{[]string{"delete", "ingresses.networking.k8s.io", "--namespace", "default"}, false},
		{[]string{"list", "pods", "--all-namespaces"}, false},
		{[]string{"create", "events", "--namespace", "default"}, false},
		{[]string{"update", "leases.coordination.k8s.io/someone-elses", "--namespace", ns}, false},
		{[]string{"create", "leases.coordination.k8s.io", "--namespace", "default"}, false},
		{[]string{"get", "ingresses.networking.k8s.io", "--namespace", "default"}, false},
	} {
		if got := canI(t, ns, "postern", tc.args...); got != tc.want {
			t.Errorf("can the ServiceAccount %s? %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// checkUpgrade: an upgrade with --reuse-values changes what it sets.
func checkUpgrade(t *testing.T, h chart.Helm, dir, ns string) {
	t.Helper()
	if _, err := h.Run(helmCtx(t), "upgrade", "postern", dir, "--namespace", ns, "--reuse-values", "--set", "replicaCount=3"); err != nil {
		t.Fatal(err)
	}
	if got := kubectl(t, "get", "deployment", "postern", "--namespace", ns, "-o", "jsonpath={.spec.replicas}"); got != "3" {
		t.Errorf("replicas after upgrade = %s, want 3", got)
	}
}

// checkBadValuesRefused: bad values are refused by the schema, nothing
// created, no release.
func checkBadValuesRefused(t *testing.T, h chart.Helm, dir, ns string) {
	t.Helper()
	_, err := h.Run(helmCtx(t), "install", "bad", dir, "--namespace", ns, "--set", "kind=StatefulSet")
	if err == nil || !strings.Contains(err.Error(), "/kind") {
		t.Errorf("install with kind=StatefulSet: %v, want the schema's error on /kind", err)
	}
	if out, _ := h.Run(helmCtx(t), "list", "--namespace", ns, "--all", "--short"); strings.Contains(out, "bad") {
		t.Errorf("a release of the refused install exists: %q", out)
	}
	if out, err := kubectlErr("get", "serviceaccount", "bad-postern", "--namespace", ns); err == nil {
		t.Errorf("the refused install created objects: %s", out)
	}
}

// checkUninstall: uninstall removes everything, cluster-scoped objects
// included.
func checkUninstall(t *testing.T, h chart.Helm, ns string) {
	t.Helper()
	if _, err := h.Run(helmCtx(t), "uninstall", "postern", "--namespace", ns, "--wait"); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"ingressclass/postern", "clusterrole/postern", "clusterrolebinding/postern"} {
		if out, err := kubectlErr("get", obj); err == nil {
			t.Errorf("%s is left after uninstall: %s", obj, out)
		}
	}
	for _, obj := range []string{"deployment/postern", "service/postern", "serviceaccount/postern", "role/postern", "poddisruptionbudget/postern"} {
		if out, err := kubectlErr("get", obj, "--namespace", ns); err == nil {
			t.Errorf("%s is left after uninstall: %s", obj, out)
		}
	}
}

// TestChartNotes: the notes printed by helm install say how to reach
// Postern for each Service type, and the first Ingress they show is one
// the API server accepts, of the chart's class.
func TestChartNotes(t *testing.T) {
	h, dir := chartHelm(t)
	ns := namespace(t, "chart-notes")
	for _, tc := range []struct {
		set, class string
		want       []string
	}{
		{"service.type=LoadBalancer", "postern", []string{"kubectl get service --namespace chart-notes postern --watch", "{.status.loadBalancer.ingress[0].ip}"}},
		{"service.type=NodePort", "postern", []string{`{.spec.ports[?(@.name=="http")].nodePort}`, "export POSTERN_URL=http://$NODE_IP:$NODE_PORT"}},
		{"service.type=ClusterIP", "postern", []string{"kubectl port-forward --namespace chart-notes service/postern 8080:80"}},
		{"ingressClass.name=edge,ingressClass.default=true", "edge", []string{`class "edge" and Ingresses without a class`}},
		{"kind=DaemonSet", "postern", []string{"kubectl port-forward --namespace chart-notes daemonset/postern 10254"}},
		{"watchNamespaces={a,b}", "postern", []string{"in the namespaces a, b."}},
	} {
		t.Run(tc.set, func(t *testing.T) {
			out, err := h.Run(helmCtx(t), "install", "postern", dir, "--namespace", ns, "--dry-run", "--set", tc.set)
			if err != nil {
				t.Fatal(err)
			}
			_, notes, ok := strings.Cut(out, "NOTES:\n")
			if !ok {
				t.Fatalf("no NOTES in:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(notes, w) {
					t.Errorf("notes lack %q:\n%s", w, notes)
				}
			}
			if strings.Contains(notes, "<no value>") || strings.Contains(notes, "%!") {
				t.Errorf("notes render a missing value:\n%s", notes)
			}
			ing := notesIngress(t, notes)
			if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != tc.class || len(ing.Spec.Rules) != 1 {
				t.Errorf("the notes' Ingress = %+v, want one rule of class %s", ing.Spec, tc.class)
			}
		})
	}
}

// notesIngress returns the Ingress of the notes' kubectl apply heredoc,
// after the API server accepted it in a dry run.
func notesIngress(t *testing.T, notes string) *networkingv1.Ingress {
	t.Helper()
	_, rest, ok := strings.Cut(notes, "<<'YAML'\n")
	body, _, ok2 := strings.Cut(rest, "\n   YAML\n")
	if !ok || !ok2 {
		t.Fatalf("no kubectl apply heredoc in the notes:\n%s", notes)
	}
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "   "))
	}
	yaml := strings.Join(lines, "\n") + "\n"
	if out, err := kubectlStdin(yaml, "apply", "--dry-run=server", "--validate=strict", "--namespace", "default", "-f", "-"); err != nil {
		t.Fatalf("the API server refused the notes' Ingress: %v\n%s\n%s", err, out, yaml)
	}
	m, err := chart.Decode([]byte(yaml))
	if err != nil {
		t.Fatalf("the notes' Ingress does not decode: %v", err)
	}
	ings := chart.All[*networkingv1.Ingress](m)
	if len(ings) != 1 {
		t.Fatalf("the notes' heredoc holds %v, want one Ingress", m.Kinds())
	}
	return ings[0]
}

// TestChartArgs: the command line each CI values file gives postern is one
// that postern accepts (it parses and validates it, then --version exits).
func TestChartArgs(t *testing.T) {
	h, dir := chartHelm(t)
	help, _ := exec.CommandContext(helmCtx(t), env.postern, "--help").CombinedOutput()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	if !known["ingress-class"] {
		t.Fatalf("cannot read postern's flags from --help:\n%s", help)
	}
	// In a pod the CA bundle is a mounted ConfigMap; here any file will do.
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, file := range valuesFiles(t, dir) {
		t.Run(name, func(t *testing.T) {
			m, err := h.Template(helmCtx(t), dir, "postern", "postern", "-f", file)
			if err != nil {
				t.Fatal(err)
			}
			args, err := m.Args()
			if err != nil {
				t.Fatal(err)
			}
			var run []string
			for _, a := range args {
				flag, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				switch {
				case known[flag] && flag == "acme-ca-bundle":
					run = append(run, "--acme-ca-bundle="+bundle)
				case known[flag]:
					run = append(run, a)
				default:
					t.Errorf("the chart renders %s, a flag postern does not have", a)
				}
			}
			out, err := exec.CommandContext(helmCtx(t), env.postern, append(run, "--version")...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "postern ") {
				t.Errorf("postern %s --version: %v\n%s", strings.Join(run, " "), err, out)
			}
		})
	}
}
