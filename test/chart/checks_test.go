//go:build chart

package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
	{APIGroups: []string{""}, Resources: []string{"services", "secrets", "configmaps"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
}

// gatewayWatchRules are the rules Postern needs wherever it watches, with
// gatewayAPI.enabled.
var gatewayWatchRules = append(slices.Clone(watchRules),
	rbacv1.PolicyRule{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"}, Verbs: []string{"list", "watch"}},
	rbacv1.PolicyRule{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways/status", "httproutes/status", "grpcroutes/status", "backendtlspolicies/status"}, Verbs: []string{"update"}},
)

// gatewayClusterRules are the cluster-scoped rules of gatewayAPI.enabled.
var gatewayClusterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gatewayclasses"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gatewayclasses/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
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
		"--publish-service=postern/postern", "--acme-directory=", "--watch-gateway-api=false"} {
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

func checkGateway(t *testing.T, m *Manifest) {
	c, _ := m.Container()
	if !slices.Contains(c.Args, "--gateway-controller-name=example.com/edge-gateway") || slices.Contains(c.Args, "--watch-gateway-api=false") {
		t.Errorf("args %q: want --gateway-controller-name=example.com/edge-gateway and the Gateway API watched", c.Args)
	}
	var classes []*unstructured.Unstructured
	for _, u := range All[*unstructured.Unstructured](m) {
		if u.GetAPIVersion() == "gateway.networking.k8s.io/v1" && u.GetKind() == "GatewayClass" {
			classes = append(classes, u)
		}
	}
	if len(classes) != 1 || classes[0].GetName() != "edge" {
		t.Fatalf("want GatewayClass edge: %v", m.Kinds())
	}
	if ctrl, _, _ := unstructured.NestedString(classes[0].Object, "spec", "controllerName"); ctrl != "example.com/edge-gateway" {
		t.Errorf("GatewayClass controllerName = %q, want example.com/edge-gateway", ctrl)
	}
	wantRoles(t, m, map[string][]rbacv1.PolicyRule{
		"ClusterRole/postern":       append([]rbacv1.PolicyRule{classRule}, gatewayClusterRules...),
		"Role/postern/postern":      leaseRules("postern-leader"),
		"Role/team-a/postern-watch": gatewayWatchRules,
		"Role/team-b/postern-watch": gatewayWatchRules,
		"Role/postern/postern-publish-service": {
			{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: []string{"postern"}, Verbs: []string{"get"}},
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
	checkServiceMonitorTargets(t, m)
	checkHPA(t, m)
	checkDashboardConfigMap(t, m)

	c, _ := m.Container()
	for _, want := range []string{"--access-log-sample=0.25", "--log-format=console", "--enable-pprof"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
}

// checkServiceMonitorTargets: the ServiceMonitor and its endpoint select
// exactly the metrics Service, and the public Service does not expose
// metrics.
func checkServiceMonitorTargets(t *testing.T, m *Manifest) {
	t.Helper()
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
}

// checkHPA: the HPA scales the Deployment, which leaves replicas to it.
func checkHPA(t *testing.T, m *Manifest) {
	t.Helper()
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
}

// checkDashboardConfigMap: the dashboard ConfigMap has the sidecar's label
// and the chart's JSON.
func checkDashboardConfigMap(t *testing.T, m *Manifest) {
	t.Helper()
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
