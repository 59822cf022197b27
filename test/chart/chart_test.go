//go:build chart

package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart, from this package's folder.
const chartDir = "../../charts/postern"

var helm Helm

func TestMain(m *testing.M) {
	helm.Bin = os.Getenv("POSTERN_HELM")
	if helm.Bin == "" {
		fmt.Fprintln(os.Stderr, "chart tests: set POSTERN_HELM to a helm binary (make chart builds one with test/chart/helm.sh)")
		os.Exit(1)
	}
	home, err := os.MkdirTemp("", "postern-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helm.Home = home
	code := m.Run()
	_ = os.RemoveAll(home)
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// valuesFiles are the chart's CI values files, by short name ("default",
// "daemonset", ...).
func valuesFiles(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s: %v", chartDir, err)
	}
	out := make(map[string]string)
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	for _, want := range []string{"default", "daemonset", "namespaced", "acme", "servicemonitor"} {
		if out[want] == "" {
			t.Errorf("ci/%s-values.yaml is missing", want)
		}
	}
	return out
}

func render(t *testing.T, args ...string) *Manifest {
	t.Helper()
	m, err := helm.Template(ctx(t), chartDir, "postern", "postern", args...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLint: helm lint --strict passes with every CI values file.
func TestLint(t *testing.T) {
	for name, file := range valuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := helm.Run(ctx(t), "lint", "--strict", chartDir, "--namespace", "postern", "-f", file)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			// --strict turns warnings into failures; INFO lines (the icon) are fine.
			if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestTemplate renders every CI values file and checks what must hold
// whatever the values, then what each file is about.
func TestTemplate(t *testing.T) {
	specific := map[string]func(*testing.T, *Manifest){
		"default":        checkDefault,
		"daemonset":      checkDaemonSet,
		"namespaced":     checkNamespaced,
		"acme":           checkACME,
		"gateway":        checkGateway,
		"servicemonitor": checkServiceMonitor,
	}
	for name, file := range valuesFiles(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := render(t, "-f", file)
			checkInvariants(t, m)
			check := specific[name]
			if check == nil {
				t.Fatalf("no checks for ci/%s-values.yaml: add them to TestTemplate", name)
			}
			check(t, m)
		})
	}
}

// checkInvariants: security settings, probes, ports, selectors and RBAC
// that every rendering must have.
func checkInvariants(t *testing.T, m *Manifest) {
	t.Helper()
	pt, err := m.PodTemplate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Container()
	if err != nil {
		t.Fatal(err)
	}
	pod := pt.Spec

	checkSecurityContext(t, pod, c)
	ports := checkListeners(t, c)

	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false")
	}

	// The downward API names the pod and its namespace.
	for _, name := range []string{"POD_NAME", "POD_NAMESPACE"} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil {
			t.Errorf("env %s not from the downward API", name)
		}
	}

	checkDrainGrace(t, pod, c)
	checkSelectors(t, m, pt, ports)
	checkIngressClassFlags(t, m, c)
	checkRBACShape(t, m, pod.ServiceAccountName)
}

// checkSecurityContext: non-root, read-only, no capabilities, no
// escalation, seccomp.
func checkSecurityContext(t *testing.T, pod corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatal("pod or container securityContext missing")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Errorf("pod must run as a non-root UID: %+v", psc)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("pod seccomp profile = %+v, want RuntimeDefault", psc.SeccompProfile)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities = %+v, want drop [ALL] and add nothing", sc.Capabilities)
	}
}

// checkListeners: each flag's port is the container port of that name, and
// the probes hit the metrics port. It returns the container ports by name.
func checkListeners(t *testing.T, c *corev1.Container) map[string]int32 {
	t.Helper()
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for flag, port := range map[string]string{"http-addr": "http", "https-addr": "https", "metrics-addr": "metrics"} {
		v, ok := Flag(c.Args, flag)
		if want := fmt.Sprintf(":%d", ports[port]); !ok || v != want {
			t.Errorf("--%s = %q, want %q (container port %q)", flag, v, want, port)
		}
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe for %s = %+v, want GET %s on port metrics", path, probe, path)
		}
	}
	if ports["metrics"] != 10254 {
		t.Errorf("metrics port = %d, want 10254", ports["metrics"])
	}
	return ports
}

// checkDrainGrace: the pod outlives its drain: preStop sleep +
// --shutdown-grace.
func checkDrainGrace(t *testing.T, pod corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	grace, _ := Flag(c.Args, "shutdown-grace")
	d, err := time.ParseDuration(grace)
	if err != nil {
		t.Errorf("--shutdown-grace=%q: %v", grace, err)
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		d += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if tg := pod.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second <= d {
		t.Errorf("terminationGracePeriodSeconds %v is not above preStop sleep + shutdown grace (%s)", tg, d)
	}
}

// checkSelectors: every selector selects the pods, and the Services' target
// ports exist.
func checkSelectors(t *testing.T, m *Manifest, pt *corev1.PodTemplateSpec, ports map[string]int32) {
	t.Helper()
	pod := pt.Spec
	podLabels := labels.Set(pt.Labels)
	for _, s := range All[*corev1.Service](m) {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s does not select the pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s targets %q, not a container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	for _, p := range All[*policyv1.PodDisruptionBudget](m) {
		if !matches(t, p.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget %s does not select the pods", p.Name)
		}
	}
	for _, d := range All[*appsv1.Deployment](m) {
		if !matches(t, d.Spec.Selector.MatchLabels, podLabels) {
			t.Error("Deployment selector does not match its pods")
		}
	}
	for _, d := range All[*appsv1.DaemonSet](m) {
		if !matches(t, d.Spec.Selector.MatchLabels, podLabels) {
			t.Error("DaemonSet selector does not match its pods")
		}
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !matches(t, tsc.LabelSelector.MatchLabels, podLabels) {
			t.Errorf("topology spread on %s does not select the pods", tsc.TopologyKey)
		}
	}
}

// checkIngressClassFlags: the IngressClass and the flags agree.
func checkIngressClassFlags(t *testing.T, m *Manifest, c *corev1.Container) {
	t.Helper()
	for _, ic := range All[*networkingv1.IngressClass](m) {
		if v, _ := Flag(c.Args, "ingress-class"); v != ic.Name {
			t.Errorf("--ingress-class=%s, IngressClass %s", v, ic.Name)
		}
		if v, _ := Flag(c.Args, "controller-class"); v != ic.Spec.Controller {
			t.Errorf("--controller-class=%s, IngressClass controller %s", v, ic.Spec.Controller)
		}
	}
}

func matches(t *testing.T, sel map[string]string, set labels.Set) bool {
	t.Helper()
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(set)
}

// TestRedirectPort: HTTP->HTTPS redirects point at the port clients reach
// HTTPS on, which is not the container's 8443: the Service's port, or the
// node's with hostPorts; 443 is Postern's default and is left out.
func TestRedirectPort(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{"service.type=LoadBalancer", ""},
		{"service.ports.https=8443", "8443"},
		{"kind=DaemonSet,hostPorts.enabled=true,hostPorts.https=4443", "4443"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			t.Parallel()
			args, err := render(t, "--set", tc.set).Args()
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := Flag(args, "https-redirect-port"); got != tc.want {
				t.Errorf("--https-redirect-port = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBadValuesFail: values.schema.json and the templates' own checks turn
// bad values into an error naming the value, before anything is installed.
func TestBadValuesFail(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"kind=StatefulSet", "/kind"},
		{"replicaCount=-1", "/replicaCount"},
		{"replicas=3", "'replicas' not allowed"},
		{"service.type=External", "/service/type"},
		{"service.type=ClusterIP,service.externalTrafficPolicy=Local", "/service/externalTrafficPolicy"},
		{"service.externalTrafficPolicy=local", "/service/externalTrafficPolicy"},
		{"service.ports.http=0", "/service/ports/http"},
		{"containerPorts.https=70000", "/containerPorts/https"},
		{`watchNamespaces=a\,b`, "/watchNamespaces"},
		{"watchNamespaces={Team_A}", "/watchNamespaces/0"},
		{"publishService.pathOverride=no-slash", "/publishService/pathOverride"},
		{"publishStatusAddress={192.0.2.1}", "/publishStatusAddress"},
		{"defaultSSLCertificate=just-a-name", "/defaultSSLCertificate"},
		{"logLevel=verbose", "/logLevel"},
		{"logFormat=text", "/logFormat"},
		{"accessLog.sample=2", "/accessLog/sample"},
		{"acme.directory=ftp://example.com/dir", "/acme/directory"},
		{"acme.email=not-an-email", "/acme/email"},
		{"image.digest=sha256:abc", "/image/digest"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy"},
		{"ingressClass.controller=no-domain", "/ingressClass/controller"},
		{"gatewayAPI.controllerName=no-domain", "/gatewayAPI/controllerName"},
		{"gatewayAPI.gatewayClass.name=Edge_1", "/gatewayAPI/gatewayClass/name"},
		{"kind=DaemonSet,autoscaling.enabled=true", "/autoscaling/enabled"},
		{"autoscaling.enabled=true,autoscaling.minReplicas=5,autoscaling.maxReplicas=3", "minReplicas (5) is above"},
		{"podDisruptionBudget.maxUnavailable=lots", "/podDisruptionBudget/maxUnavailable"},
		{"metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"},
		{"terminationGracePeriodSeconds=20", "must be at least preStopSleepSeconds + shutdownGraceSeconds (30)"},
		{"serviceAccount.create=false", "serviceAccount.name is required"},
		{"service.enabled=false", "publishService.enabled needs service.enabled"},
		{"topologySpreadConstraints[0].whenUnsatisfiable=Maybe", "/topologySpreadConstraints/0/whenUnsatisfiable"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			t.Parallel()
			_, err := helm.Template(ctx(t), chartDir, "postern", "postern", "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s rendered without error", tc.set)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("--set %s: error does not mention %q:\n%v", tc.set, tc.want, err)
			}
		})
	}
}

// TestREADMEValues: every value in values.yaml has a row in the chart
// README's values table, and every row is a value.
func TestREADMEValues(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	// Objects whose defaults are Kubernetes fields (resources, security
	// contexts) are one row; the chart's own settings are one row per leaf.
	opaque := map[string]bool{"podSecurityContext": true, "securityContext": true, "resources": true, "nodeSelector": true, "dashboard.labels": true}
	var keys []string
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for k, x := range v {
			key := strings.TrimPrefix(prefix+"."+k, ".")
			if sub, ok := x.(map[string]any); ok && len(sub) > 0 && !opaque[key] {
				walk(key, sub)
				continue
			}
			keys = append(keys, key)
		}
	}
	walk("", values)
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Values\n")
	if !ok {
		t.Fatal("README.md has no \"## Values\" section")
	}
	rows := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_.]+)` \\|").FindAllStringSubmatch(table, -1)
	var documented []string
	for _, r := range rows {
		documented = append(documented, r[1])
	}
	slices.Sort(keys)
	slices.Sort(documented)
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("value %s is not in README.md's values table", k)
		}
	}
	for _, d := range documented {
		if !slices.Contains(keys, d) {
			t.Errorf("README.md documents %s, which values.yaml does not have", d)
		}
	}
}
