//go:build chart

package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

	// Non-root, read-only, no capabilities, no escalation, seccomp.
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

	// Listeners: each flag's port is the container port of that name, and
	// the probes hit the metrics port.
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

	// The pod outlives its drain: preStop sleep + --shutdown-grace.
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

	// Every selector selects the pods, and the Services' target ports exist.
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

	// The IngressClass and the flags agree.
	for _, ic := range All[*networkingv1.IngressClass](m) {
		if v, _ := Flag(c.Args, "ingress-class"); v != ic.Name {
			t.Errorf("--ingress-class=%s, IngressClass %s", v, ic.Name)
		}
		if v, _ := Flag(c.Args, "controller-class"); v != ic.Spec.Controller {
			t.Errorf("--controller-class=%s, IngressClass controller %s", v, ic.Spec.Controller)
		}
	}

	checkRBACShape(t, m, pod.ServiceAccountName)
}

func matches(t *testing.T, sel map[string]string, set labels.Set) bool {
	t.Helper()
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(set)
}

// checkRBACShape: no wildcard, no verb that grants more than the resource
// (escalate, bind, impersonate), every binding names a role of the chart
// and the pods' ServiceAccount, and the election Lease is the one in
// --election-id.
func checkRBACShape(t *testing.T, m *Manifest, sa string) {
	t.Helper()
	allowed := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	roles := map[string][]rbacv1.PolicyRule{}
	for _, r := range All[*rbacv1.ClusterRole](m) {
		roles["ClusterRole/"+r.Name] = r.Rules
	}
	for _, r := range All[*rbacv1.Role](m) {
		roles["Role/"+r.Namespace+"/"+r.Name] = r.Rules
	}
	for name, rules := range roles {
		for _, r := range rules {
			for _, s := range slices.Concat(r.APIGroups, r.Resources, r.Verbs, r.ResourceNames) {
				if s == "*" {
					t.Errorf("%s has a wildcard rule: %+v", name, r)
				}
			}
			for _, v := range r.Verbs {
				if !slices.Contains(allowed, v) {
					t.Errorf("%s grants %q: %+v", name, v, r)
				}
			}
		}
	}
	check := func(kind, ns, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		key := ref.Kind + "/" + ref.Name
		if ref.Kind == "Role" {
			key = "Role/" + ns + "/" + ref.Name
		}
		if _, ok := roles[key]; !ok {
			t.Errorf("%s %s/%s refers to %s, which the chart does not render", kind, ns, name, key)
		}
		if len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != sa || subjects[0].Namespace != "postern" {
			t.Errorf("%s %s/%s subjects = %+v, want only ServiceAccount postern/%s", kind, ns, name, subjects, sa)
		}
	}
	for _, b := range All[*rbacv1.ClusterRoleBinding](m) {
		check("ClusterRoleBinding", "", b.Name, b.RoleRef, b.Subjects)
	}
	for _, b := range All[*rbacv1.RoleBinding](m) {
		check("RoleBinding", b.Namespace, b.Name, b.RoleRef, b.Subjects)
	}
	args, _ := m.Args()
	id, _ := Flag(args, "election-id")
	own := roles["Role/postern/postern"]
	if !slices.ContainsFunc(own, func(r rbacv1.PolicyRule) bool {
		return slices.Equal(r.Resources, []string{"leases"}) && slices.Equal(r.ResourceNames, []string{id}) &&
			slices.Equal(r.Verbs, []string{"get", "update"})
	}) {
		t.Errorf("the Role in the release namespace does not grant get, update on Lease %q: %+v", id, own)
	}
}

// watchRules are the rules Postern needs wherever it watches.
var watchRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services", "secrets"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

var classRule = rbacv1.PolicyRule{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingressclasses"}, Verbs: []string{"list", "watch"}}

func leaseRules(id string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{id}, Verbs: []string{"get", "update"}},
	}
}

// wantRoles compares every ClusterRole and Role to want, keyed like
// "ClusterRole/name" and "Role/namespace/name".
func wantRoles(t *testing.T, m *Manifest, want map[string][]rbacv1.PolicyRule) {
	t.Helper()
	got := map[string][]rbacv1.PolicyRule{}
	for _, r := range All[*rbacv1.ClusterRole](m) {
		got["ClusterRole/"+r.Name] = r.Rules
	}
	for _, r := range All[*rbacv1.Role](m) {
		got["Role/"+r.Namespace+"/"+r.Name] = r.Rules
	}
	gy, _ := yaml.Marshal(got)
	wy, _ := yaml.Marshal(want)
	if string(gy) != string(wy) {
		t.Errorf("RBAC rules differ\n--- got ---\n%s--- want ---\n%s", gy, wy)
	}
}

func checkDefault(t *testing.T, m *Manifest) {
	d := All[*appsv1.Deployment](m)
	if len(d) != 1 || d[0].Spec.Replicas == nil || *d[0].Spec.Replicas != 2 {
		t.Fatalf("want one Deployment of 2 replicas: %v", m.Kinds())
	}
	svc := All[*corev1.Service](m)
	if len(svc) != 1 || svc[0].Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Fatalf("want one LoadBalancer Service: %v", m.Kinds())
	}
	got := map[string]string{}
	for _, p := range svc[0].Spec.Ports {
		got[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
	}
	if want := map[string]string{"http": "80->http", "https": "443->https"}; !mapsEqual(got, want) {
		t.Errorf("Service ports = %v, want %v", got, want)
	}
	c, _ := m.Container()
	for _, want := range []string{"--ingress-class=postern", "--controller-class=postern.dev/ingress-controller",
		"--election-id=postern-leader", "--http-addr=:8080", "--https-addr=:8443", "--metrics-addr=:10254",
		"--publish-service=postern/postern", "--acme-directory="} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	ic := All[*networkingv1.IngressClass](m)
	if len(ic) != 1 || ic[0].Name != "postern" || ic[0].Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "" {
		t.Errorf("want IngressClass postern, not the default: %+v", ic)
	}
	if len(All[*policyv1.PodDisruptionBudget](m)) != 1 || len(All[*autoscalingv2.HorizontalPodAutoscaler](m)) != 0 {
		t.Errorf("want a PodDisruptionBudget and no HPA: %v", m.Kinds())
	}
	pt, _ := m.PodTemplate()
	if len(pt.Spec.TopologySpreadConstraints) != 2 {
		t.Errorf("want zone and host topology spread, got %+v", pt.Spec.TopologySpreadConstraints)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want CPU and memory requests and a memory limit", c.Resources)
	}
	wantRoles(t, m, map[string][]rbacv1.PolicyRule{
		"ClusterRole/postern":  append([]rbacv1.PolicyRule{classRule}, watchRules...),
		"Role/postern/postern": leaseRules("postern-leader"),
	})
}

func checkDaemonSet(t *testing.T, m *Manifest) {
	if len(All[*appsv1.DaemonSet](m)) != 1 || len(All[*appsv1.Deployment](m)) != 0 {
		t.Fatalf("want a DaemonSet and no Deployment: %v", m.Kinds())
	}
	c, _ := m.Container()
	hostPorts := map[string]int32{}
	for _, p := range c.Ports {
		hostPorts[p.Name] = p.HostPort
	}
	if hostPorts["http"] != 80 || hostPorts["https"] != 443 || hostPorts["metrics"] != 0 {
		t.Errorf("host ports = %v, want http 80, https 443, metrics none", hostPorts)
	}
	svc := All[*corev1.Service](m)[0]
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service = %s/%s, want NodePort/Local", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			t.Errorf("Service port %s has no fixed nodePort", p.Name)
		}
	}
	pt, _ := m.PodTemplate()
	if len(pt.Spec.TopologySpreadConstraints) != 0 {
		t.Error("a DaemonSet has no use for topology spread")
	}
	if _, ok := Flag(c.Args, "https-redirect-port"); ok {
		t.Error("host port 443 is the default redirect port: no --https-redirect-port")
	}
	if !slices.Contains(c.Args, "--access-log=false") {
		t.Errorf("args %q lack --access-log=false", c.Args)
	}
}

func checkNamespaced(t *testing.T, m *Manifest) {
	c, _ := m.Container()
	for _, want := range []string{"--watch-namespace=team-a,team-b", "--ingress-class=postern-teams",
		"--default-ssl-certificate=certs/wildcard-tls", "--publish-service=edge/shared-lb", "--election-id=postern-teams"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	ic := All[*networkingv1.IngressClass](m)
	if len(ic) != 1 || ic[0].Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" {
		t.Errorf("want the default IngressClass: %+v", ic)
	}
	pdb := All[*policyv1.PodDisruptionBudget](m)[0]
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PodDisruptionBudget = %+v, want minAvailable 2 only", pdb.Spec)
	}
	wantRoles(t, m, map[string][]rbacv1.PolicyRule{
		"ClusterRole/postern":       {classRule},
		"Role/postern/postern":      leaseRules("postern-teams"),
		"Role/team-a/postern-watch": watchRules,
		"Role/team-b/postern-watch": watchRules,
		"Role/certs/postern-default-certificate": {
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"}},
		},
		"Role/edge/postern-publish-service": {
			{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: []string{"shared-lb"}, Verbs: []string{"get"}},
		},
	})
}

func checkACME(t *testing.T, m *Manifest) {
	c, _ := m.Container()
	for _, want := range []string{"--acme-directory=https://pebble.acme.svc:14000/dir", "--acme-email=ops@example.com"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	bundle, ok := Flag(c.Args, "acme-ca-bundle")
	mounted := slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool {
		return v.ReadOnly && filepath.Dir(bundle) == filepath.Clean(v.MountPath) && v.Name == "acme-ca"
	})
	pt, _ := m.PodTemplate()
	fromConfigMap := slices.ContainsFunc(pt.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == "acme-ca" && v.ConfigMap != nil && v.ConfigMap.Name == "pebble-ca" &&
			len(v.ConfigMap.Items) == 1 && v.ConfigMap.Items[0].Key == "root.pem" && v.ConfigMap.Items[0].Path == filepath.Base(bundle)
	})
	if !ok || !mounted || !fromConfigMap {
		t.Errorf("--acme-ca-bundle=%q is not the root.pem of ConfigMap pebble-ca mounted read-only (mounts %+v, volumes %+v)",
			bundle, c.VolumeMounts, pt.Spec.Volumes)
	}
	wantRoles(t, m, map[string][]rbacv1.PolicyRule{
		"ClusterRole/postern": append([]rbacv1.PolicyRule{classRule}, watchRules...),
		"Role/postern/postern": append(leaseRules("postern-leader"), rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{"secrets"},
			Verbs: []string{"get", "list", "watch", "create", "update", "delete"},
		}),
	})
}

func checkServiceMonitor(t *testing.T, m *Manifest) {
	var sm *unstructured.Unstructured
	for _, u := range All[*unstructured.Unstructured](m) {
		if u.GetKind() == "ServiceMonitor" {
			sm = u
		}
	}
	if sm == nil {
		t.Fatalf("no ServiceMonitor: %v", m.Kinds())
	}
	if sm.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels = %v, want release: kube-prometheus-stack", sm.GetLabels())
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints = %v", endpoints)
	}
	ep, _ := endpoints[0].(map[string]any)
	if ep["port"] != "metrics" || ep["path"] != "/metrics" || ep["interval"] != "15s" {
		t.Errorf("ServiceMonitor endpoint = %v", ep)
	}
	// It selects exactly the metrics Service, which has a "metrics" port.
	var selected []string
	for _, s := range All[*corev1.Service](m) {
		if labels.SelectorFromSet(sel).Matches(labels.Set(s.Labels)) {
			selected = append(selected, s.Name)
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "metrics" }) {
				t.Errorf("Service %s has no port named metrics", s.Name)
			}
			if s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("metrics Service %s is %s, want ClusterIP", s.Name, s.Spec.Type)
			}
		}
	}
	if !slices.Equal(selected, []string{"postern-metrics"}) {
		t.Errorf("ServiceMonitor selects Services %v, want [postern-metrics]", selected)
	}
	// The public Service does not expose metrics.
	for _, s := range All[*corev1.Service](m) {
		if s.Name == "postern" && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.TargetPort.String() == "metrics" }) {
			t.Error("the public Service exposes the metrics port")
		}
	}

	// The HPA scales the Deployment, which leaves replicas to it.
	hpa := All[*autoscalingv2.HorizontalPodAutoscaler](m)
	d := All[*appsv1.Deployment](m)
	if len(hpa) != 1 || len(d) != 1 || hpa[0].Spec.ScaleTargetRef.Name != d[0].Name || hpa[0].Spec.ScaleTargetRef.Kind != "Deployment" {
		t.Fatalf("want an HPA on the Deployment: %v", m.Kinds())
	}
	if d[0].Spec.Replicas != nil {
		t.Errorf("Deployment sets replicas %d although an HPA scales it", *d[0].Spec.Replicas)
	}
	if len(hpa[0].Spec.Metrics) != 2 {
		t.Errorf("HPA metrics = %+v, want CPU and memory", hpa[0].Spec.Metrics)
	}

	// The dashboard ConfigMap: the sidecar's label and the chart's JSON.
	var cm *corev1.ConfigMap
	for _, c := range All[*corev1.ConfigMap](m) {
		if c.Name == "postern-dashboard" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatalf("no dashboard ConfigMap: %v", m.Kinds())
	}
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Ingress" {
		t.Errorf("dashboard ConfigMap labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	want, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "postern.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, wantJSON any
	if err := json.Unmarshal([]byte(cm.Data["postern.json"]), &got); err != nil {
		t.Fatalf("dashboard in the ConfigMap is not JSON: %v", err)
	}
	_ = json.Unmarshal(want, &wantJSON)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(wantJSON)
	if string(gb) != string(wb) {
		t.Error("the ConfigMap's dashboard differs from dashboards/postern.json")
	}

	c, _ := m.Container()
	for _, want := range []string{"--access-log-sample=0.25", "--log-format=console", "--enable-pprof"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
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
