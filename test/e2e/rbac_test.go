//go:build e2e

package e2e

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/postern-dev/postern/test/chart"
)

// TestRBACClusterWide runs two postern replicas as the ServiceAccount of a
// chart installed with its defaults (ClusterRole): they route, the leader
// writes status with the chart Service's address and posts Events (and
// patches a repeated one into a series), leadership passes to the other
// replica, and nothing is ever forbidden.
func TestRBACClusterWide(t *testing.T) {
	h, dir := chartHelm(t)
	rel := namespace(t, "rbac-postern")
	app := namespace(t, "rbac-app")
	m := installChartNoPods(t, h, dir, "rbac", rel,
		"--set", "ingressClass.name=rbac,ingressClass.controller=e2e.postern.dev/rbac,electionID=rbac-leader")
	apply(t, echoWorkload(app, "svc", "rbac", 1, "v1")+
		ingress(app, "good", "rbac", "good.rbac.example.com", "/=svc")+
		ingress(app, "broken", "rbac", "broken.rbac.example.com", "/=missing"))

	a := startAsChart(t, m, rel, true)
	b := startAsChart(t, m, rel, true)
	a.expectWithin(t, 60*time.Second, "good.rbac.example.com", "/", 200, "rbac")
	b.expect(t, "good.rbac.example.com", "/", 200, "rbac")
	a.expect(t, "broken.rbac.example.com", "/", 503, "")

	// Status: the address of the chart's own Service (--publish-service),
	// its cluster IP since no cloud gives it a load balancer here.
	clusterIP := kubectl(t, "get", "service", fullname(t, m), "--namespace", rel, "-o", "jsonpath={.spec.clusterIP}")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, app, "good"); got != clusterIP {
			return fmt.Errorf("status of good = %q, want the Service's %s", got, clusterIP)
		}
		return nil
	})

	leader, other := electedLeader(t, rel, a, b)
	checkEventSeries(t, app, leader)

	// Hand-over: the leader stops (releasing the Lease), the other takes
	// over and writes status for a new Ingress.
	leader.Stop()
	logLine(t, other, 40*time.Second, "became leader")
	apply(t, ingress(app, "later", "rbac", "later.rbac.example.com", "/=svc"))
	other.expect(t, "later.rbac.example.com", "/", 200, "rbac")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, app, "later"); got != clusterIP {
			return fmt.Errorf("status of later = %q, want %s from the new leader", got, clusterIP)
		}
		return nil
	})
	noForbidden(t, a, b)
}

// electedLeader waits until exactly one of a and b logged becoming leader
// on the chart's Lease, checks the Lease names it, and returns it and the
// other replica.
func electedLeader(t *testing.T, rel string, a, b *Postern) (leader, other *Postern) {
	t.Helper()
	leader, other = oneLeader(t, a, b)
	holder := kubectl(t, "get", "lease", "rbac-leader", "--namespace", rel, "-o", "jsonpath={.spec.holderIdentity}")
	if !strings.Contains(leader.Out.String(), holder) {
		t.Errorf("Lease holder %q is not the replica that logged becoming leader", holder)
	}
	return leader, other
}

// checkEventSeries checks the Events on the broken Ingress of app: one at
// first; then the problem goes and comes back twice (leader routing it
// each time), and the repeated Event becomes a series, which the events
// library writes with a patch.
func checkEventSeries(t *testing.T, app string, leader *Postern) {
	t.Helper()
	brokenEvent := func() (*eventSeen, error) {
		out, err := kubectlErr("get", "events.events.k8s.io", "--namespace", app, "-o", "json")
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, out)
		}
		var events eventList
		if err := json.Unmarshal([]byte(out), &events); err != nil {
			return nil, err
		}
		seen := &eventSeen{}
		for _, e := range events.Items {
			if e.Regarding.Kind == "Ingress" && e.Regarding.Name == "broken" && e.Reason == "ServiceNotFound" {
				seen.events++
				if e.Series != nil {
					seen.series = max(seen.series, e.Series.Count)
				}
			}
		}
		return seen, nil
	}
	eventually(t, 40*time.Second, func() error {
		seen, err := brokenEvent()
		if err == nil && seen.events == 0 {
			err = fmt.Errorf("no ServiceNotFound Event on Ingress broken")
		}
		return err
	})
	for range 2 {
		apply(t, echoWorkload(app, "missing", "rbac", 1, "v1"))
		leader.expect(t, "broken.rbac.example.com", "/", 200, "rbac")
		kubectl(t, "delete", "service", "missing", "--namespace", app)
		leader.expect(t, "broken.rbac.example.com", "/", 503, "")
	}
	eventually(t, 40*time.Second, func() error {
		seen, err := brokenEvent()
		if err == nil && seen.series < 2 {
			err = fmt.Errorf("the repeated Event is not a series: %+v", seen)
		}
		return err
	})
}

type eventSeen struct{ events, series int }

// TestRBACNamespaced: installed with watchNamespaces, the chart's Roles
// are enough to serve those namespaces (and nothing elsewhere), to watch
// the default certificate's namespace, and to read the published Service
// from a namespace that is not watched; the ServiceAccount can do nothing
// outside them.
func TestRBACNamespaced(t *testing.T) {
	h, dir := chartHelm(t)
	rel := namespace(t, "rbacns-postern")
	a, b := namespace(t, "rbacns-a"), namespace(t, "rbacns-b")
	other := namespace(t, "rbacns-other")
	certs := namespace(t, "rbacns-certs")
	m := installChartNoPods(t, h, dir, "rbacns", rel, "--set", strings.Join([]string{
		"watchNamespaces={" + a + "," + b + "}", "ingressClass.name=rbacns", "ingressClass.controller=e2e.postern.dev/rbacns",
		"electionID=rbacns-leader", "defaultSSLCertificate=" + certs + "/default-tls",
	}, ","))
	for _, ns := range []string{a, b, other} {
		apply(t, echoWorkload(ns, "svc", "rbacns", 1, "v1")+ingress(ns, "app", "rbacns", ns+".example.com", "/=svc"))
	}
	p := startAsChart(t, m, rel, true)
	p.expectWithin(t, 60*time.Second, a+".example.com", "/", 200, "rbacns")
	p.expectWithin(t, 60*time.Second, b+".example.com", "/", 200, "rbacns")
	p.expect(t, other+".example.com", "/", 404, "")

	// The release namespace is not watched: the published Service is read
	// by name through the publish-service Role.
	name := fullname(t, m)
	clusterIP := kubectl(t, "get", "service", name, "--namespace", rel, "-o", "jsonpath={.spec.clusterIP}")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, a, "app"); got != clusterIP {
			return fmt.Errorf("status = %q, want %s", got, clusterIP)
		}
		return nil
	})
	if got := ingressStatus(t, other, "app"); got != "" {
		t.Errorf("status written on an Ingress outside the watched namespaces: %q", got)
	}
	noForbidden(t, p)

	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"list", "ingresses.networking.k8s.io", "--namespace", a}, true},
		{[]string{"list", "ingresses.networking.k8s.io", "--namespace", other}, false},
		{[]string{"list", "ingresses.networking.k8s.io", "--all-namespaces"}, false},
		{[]string{"list", "ingressclasses.networking.k8s.io"}, true},
		{[]string{"list", "secrets", "--namespace", certs}, true},
		{[]string{"get", "secrets", "--namespace", certs}, false},
		{[]string{"list", "services", "--namespace", certs}, false},
		{[]string{"list", "secrets", "--namespace", other}, false},
		{[]string{"list", "configmaps", "--namespace", a}, true},
		{[]string{"list", "configmaps", "--namespace", other}, false},
		{[]string{"list", "configmaps", "--namespace", certs}, false},
		{[]string{"get", "services/" + name, "--namespace", rel}, true},
		{[]string{"get", "services/other", "--namespace", rel}, false},
		{[]string{"create", "events.events.k8s.io", "--namespace", b}, true},
		{[]string{"create", "events.events.k8s.io", "--namespace", other}, false},
	} {
		if got := canI(t, rel, name, tc.args...); got != tc.want {
			t.Errorf("can the ServiceAccount %s? %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// TestRBACACME: with acme.enabled the chart's Role lets postern keep its
// ACME cache in Secrets of its own namespace (the cache's informer starts,
// postern gets ready), and grants no Secret anywhere else.
func TestRBACACME(t *testing.T) {
	h, dir := chartHelm(t)
	rel := namespace(t, "rbac-acme")
	app := namespace(t, "rbac-acme-app")
	// No Ingress asks for ACME here, so the directory is never contacted.
	m := installChartNoPods(t, h, dir, "acme", rel, "--set", strings.Join([]string{
		"acme.enabled=true", "acme.directory=https://acme.invalid/directory", "acme.email=ops@example.com",
		"ingressClass.name=rbac-acme", "ingressClass.controller=e2e.postern.dev/rbac-acme", "electionID=rbac-acme",
	}, ","))
	apply(t, echoWorkload(app, "svc", "rbac-acme", 1, "v1")+ingress(app, "app", "rbac-acme", "acme.example.com", "/=svc"))
	p := startAsChart(t, m, rel, true)
	p.expectWithin(t, 60*time.Second, "acme.example.com", "/", 200, "rbac-acme")
	noForbidden(t, p)
	name := fullname(t, m)
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"create", "secrets", "--namespace", rel}, true},
		{[]string{"update", "secrets", "--namespace", rel}, true},
		{[]string{"get", "secrets", "--namespace", rel}, true},
		{[]string{"delete", "secrets", "--namespace", rel}, true},
		{[]string{"patch", "secrets", "--namespace", rel}, false},
		{[]string{"get", "secrets", "--namespace", app}, false},
		{[]string{"create", "secrets", "--namespace", app}, false},
	} {
		if got := canI(t, rel, name, tc.args...); got != tc.want {
			t.Errorf("can the ServiceAccount %s? %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// dropRule removes verb on resource from the rules of a Role or
// ClusterRole the chart installed ("clusterrole/name" or
// "role/name" in ns), leaving every other grant of the rule in place.
func dropRule(t *testing.T, obj, ns, resource, verb string) {
	t.Helper()
	args := []string{"get", obj, "-o", "json"}
	if ns != "" {
		args = append(args, "--namespace", ns)
	}
	var role struct {
		APIVersion string              `json:"apiVersion"`
		Kind       string              `json:"kind"`
		Metadata   map[string]any      `json:"metadata"`
		Rules      []rbacv1.PolicyRule `json:"rules"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, args...)), &role); err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	dropped := false
	for _, r := range role.Rules {
		if !slices.Contains(r.Resources, resource) || !slices.Contains(r.Verbs, verb) {
			rules = append(rules, r)
			continue
		}
		dropped = true
		// The other resources of the rule keep every verb; this one
		// keeps the others.
		if rest := slices.DeleteFunc(slices.Clone(r.Resources), func(s string) bool { return s == resource }); len(rest) > 0 {
			keep := r
			keep.Resources = rest
			rules = append(rules, keep)
		}
		if verbs := slices.DeleteFunc(slices.Clone(r.Verbs), func(s string) bool { return s == verb }); len(verbs) > 0 {
			keep := r
			keep.Resources, keep.Verbs = []string{resource}, verbs
			rules = append(rules, keep)
		}
	}
	if !dropped {
		t.Fatalf("%s grants no %s on %s: %+v", obj, verb, resource, role.Rules)
	}
	role.Rules = rules
	b, err := json.Marshal(role)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := kubectlStdin(string(b), "replace", "-f", "-"); err != nil {
		t.Fatalf("kubectl replace %s: %v\n%s", obj, err, out)
	}
}

// TestRBACMissingRule takes one rule away from the chart's RBAC at a time
// and shows that postern needs it and says so: a log line naming the
// resource and "forbidden", and the effect (never ready, no status, no
// Event, no leader, watches refused) rather than a silent hang.
func TestRBACMissingRule(t *testing.T) {
	h, dir := chartHelm(t)
	for i, tc := range missingRuleCases() {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v) // postern inherits the test's environment
			}
			m, rel, app := installMissingRule(t, h, dir, i, tc)
			p := startAsChart(t, m, rel, false)
			line := logLine(t, p, 60*time.Second, tc.logWords...)
			t.Logf("postern says: %s", line)
			checkRuleEffect(t, p, app, tc)
		})
	}
}

// ruleEffect is what postern does without the rule a missingRuleCase takes
// away.
type ruleEffect int

const (
	neverReady      ruleEffect = iota // an informer cannot sync: /readyz stays 503
	noStatus                          // routes, but Ingress status is never written
	noEvent                           // routes and writes status, but posts no Event
	losesLead                         // leads once (it created the Lease), cannot renew, steps down
	relists                           // ready, but every watch is refused: changes come by relisting
	noACME                            // ready after a bounded wait; ACME neither serves nor orders, and says why
	noGatewayStatus                   // routes, writes Ingress status, but no Gateway status
)

// missingRuleCase is one rule TestRBACMissingRule takes away, what postern
// logs without it and what it does.
type missingRuleCase struct {
	name           string
	set            string // extra --set for the install; {n} is the case's number
	role           string // the ClusterRole or Role edited: "cluster", "own", "publish"
	resource, verb string
	logWords       []string
	effect         ruleEffect
	env            map[string]string // postern's environment
	gateway        bool              // the Gateway API: its CRDs, the chart's gatewayAPI values and a Gateway in the app namespace
}

// missingRuleCases are the rules TestRBACMissingRule takes away, one per
// case.
func missingRuleCases() []missingRuleCase {
	// client-go's informers list through a watch (streaming lists,
	// WatchListClient) when the API server serves them, as this one does,
	// and fall back to list and watch when it does not: API servers before
	// streaming lists, within the chart's kubeVersion, need list. The list
	// cases turn streaming lists off in postern's client to take that path.
	classic := map[string]string{"KUBE_FEATURE_WatchListClient": "false"}
	return []missingRuleCase{
		{"list ingresses", "", "cluster", "ingresses", "list", []string{"forbidden", "ingresses", "list"}, neverReady, classic, false},
		{"list ingressclasses", "", "cluster", "ingressclasses", "list", []string{"forbidden", "ingressclasses", "list"}, neverReady, classic, false},
		{"list services", "", "cluster", "services", "list", []string{"forbidden", "services", "list"}, neverReady, classic, false},
		{"list endpointslices", "", "cluster", "endpointslices", "list", []string{"forbidden", "endpointslices", "list"}, neverReady, classic, false},
		{"list secrets", "", "cluster", "secrets", "list", []string{"forbidden", "secrets", "list"}, neverReady, classic, false},
		{"list configmaps", "", "cluster", "configmaps", "list", []string{"forbidden", "configmaps", "list"}, neverReady, classic, false},
		{"watch endpointslices", "", "cluster", "endpointslices", "watch", []string{"forbidden", "endpointslices", "watch"}, relists, nil, false},
		{"watch ingresses", "", "cluster", "ingresses", "watch", []string{"forbidden", "ingresses", "watch"}, relists, nil, false},
		{"update ingresses/status", "", "cluster", "ingresses/status", "update", []string{"cannot update ingress status", "forbidden"}, noStatus, nil, false},
		{"create events", "", "cluster", "events", "create", []string{"forbidden", "events", "create"}, noEvent, nil, false},
		{"get leases", "", "own", "leases", "get", []string{"forbidden", "leases", "get"}, noStatus, nil, false},
		{"create leases", "", "own", "leases", "create", []string{"forbidden", "leases", "create"}, noStatus, nil, false},
		{"update leases", "", "own", "leases", "update", []string{"forbidden", "leases", "update"}, losesLead, nil, false},
		{"get the published Service", "watchNamespaces={missing-rule-app-{n}}", "publish", "services", "get",
			[]string{"cannot resolve the address to publish", "forbidden"}, noStatus, nil, false},
		{"list the default certificate's Secrets", "watchNamespaces={missing-rule-app-{n}},defaultSSLCertificate=missing-rule-{n}/default-tls",
			"defaultcert", "secrets", "list", []string{"forbidden", "secrets", "list"}, neverReady, classic, false},
		// Cluster-wide, the ClusterRole's list on Secrets covers the ACME
		// cache's namespace too; watching only other namespaces, the
		// chart's own Role is what lets the cache start. Without it the
		// rest is served: ACME must never hold up routing.
		{"list the ACME cache's Secrets", "watchNamespaces={missing-rule-app-{n}},acme.enabled=true,acme.directory=https://acme.invalid/directory",
			"own", "secrets", "list", []string{"forbidden", "secrets", "list"}, noACME, classic, false},
		// With gatewayAPI.enabled, the Gateway API's rules: the kinds
		// watched from the start are needed to get ready, as the
		// Ingresses' are; the status rules to write their status.
		{"list httproutes", "", "cluster", "httproutes", "list", []string{"forbidden", "httproutes", "list"}, neverReady, classic, true},
		{"list grpcroutes", "", "cluster", "grpcroutes", "list", []string{"forbidden", "grpcroutes", "list"}, neverReady, classic, true},
		{"list namespaces", "", "cluster", "namespaces", "list", []string{"forbidden", "namespaces", "list"}, neverReady, classic, true},
		{"update gateways/status", "", "cluster", "gateways/status", "update", []string{"cannot update gateway status", "forbidden"}, noGatewayStatus, nil, true},
	}
}

// installMissingRule installs the chart for case i, takes tc's rule away
// from the Role or ClusterRole it names, and applies the app namespace's
// Service and Ingresses (good, and broken for want of a Service). It
// returns the chart, the release namespace and the app namespace.
func installMissingRule(t *testing.T, h chart.Helm, dir string, i int, tc missingRuleCase) (m *chart.Manifest, rel, app string) {
	t.Helper()
	rel = namespace(t, fmt.Sprintf("missing-rule-%d", i))
	app = namespace(t, fmt.Sprintf("missing-rule-app-%d", i))
	class := fmt.Sprintf("missing-rule-%d", i)
	set := fmt.Sprintf("ingressClass.name=%s,ingressClass.controller=e2e.postern.dev/%s,electionID=%s", class, class, class)
	if tc.set != "" {
		set += "," + strings.ReplaceAll(tc.set, "{n}", strconv.Itoa(i))
	}
	if tc.gateway {
		installGatewayCRDs(t)
		set += fmt.Sprintf(",gatewayAPI.enabled=true,gatewayAPI.controllerName=e2e.postern.dev/%s-gateway,gatewayAPI.gatewayClass.name=%s", class, class)
	}
	m = installChartNoPods(t, h, dir, class, rel, "--set", set)

	name := fullname(t, m)
	obj, ns := "clusterrole/"+name, ""
	switch tc.role {
	case "own":
		obj, ns = "role/"+name, rel
	case "publish":
		obj, ns = "role/"+name+"-publish-service", rel
	case "defaultcert":
		obj, ns = "role/"+name+"-default-certificate", rel
	}
	dropRule(t, obj, ns, tc.resource, tc.verb)
	apply(t, echoWorkload(app, "svc", "missing-rule", 1, "v1")+
		ingress(app, "good", class, "good.example.com", "/=svc")+
		ingress(app, "broken", class, "broken.example.com", "/=missing"))
	if tc.gateway {
		apply(t, fmt.Sprintf("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: %s}\n"+
			"spec:\n  gatewayClassName: %s\n  listeners: [{name: http, protocol: HTTP, port: 80}]\n", app, class))
	}
	return m, rel, app
}

// checkRuleEffect checks that p, run without tc's rule, does what tc.effect
// says.
func checkRuleEffect(t *testing.T, p *Postern, app string, tc missingRuleCase) {
	t.Helper()
	switch tc.effect {
	case neverReady:
		// It said why; it is not ready, and stays so.
		for range 20 {
			if code, body := httpGet(p.MetricsAddr, "", "/readyz"); code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz = %d %q without %s on %s", code, body, tc.verb, tc.resource)
			}
			time.Sleep(100 * time.Millisecond)
		}
	case relists:
		// The initial list goes through (the streaming list falls back
		// to a plain list), so it is ready; then every watch is
		// refused and the informer lists again and again on
		// client-go's back-off (up to 30 s): it keeps serving, sees
		// changes late, and says why each time.
		p.expect(t, "good.example.com", "/", 200, "missing-rule")
		eventually(t, 60*time.Second, func() error {
			n := 0
			for _, l := range strings.Split(p.Out.String(), "\n") {
				if strings.Contains(l, "Failed to watch") && strings.Contains(l, "forbidden") && strings.Contains(l, tc.resource) {
					n++
				}
			}
			if n < 2 {
				return fmt.Errorf("the refused watch was logged %d times, want it retried", n)
			}
			return nil
		})
	case noACME:
		logLine(t, p, 60*time.Second, "ACME cache Secrets cannot be listed")
		p.expect(t, "good.example.com", "/", 200, "missing-rule")
	case losesLead:
		logLine(t, p, 60*time.Second, "stopped leading")
		p.expect(t, "good.example.com", "/", 200, "missing-rule")
	case noGatewayStatus:
		p.expect(t, "good.example.com", "/", 200, "missing-rule")
		eventually(t, 40*time.Second, func() error {
			if ingressStatus(t, app, "good") == "" {
				return fmt.Errorf("no Ingress status yet")
			}
			return nil
		})
		gw := getGatewayAPI(t, app, "gateway/edge")
		if hasCondition(gw.Status.Conditions, "Programmed", "True", "", gw.Metadata.Generation) == nil {
			t.Errorf("Gateway status written without update on gateways/status: %+v", gw.Status.Conditions)
		}
	case noStatus, noEvent:
		p.expect(t, "good.example.com", "/", 200, "missing-rule")
		status := ingressStatus(t, app, "good")
		if tc.effect == noStatus && status != "" {
			t.Errorf("status written without %s on %s: %q", tc.verb, tc.resource, status)
		}
		if tc.effect == noEvent {
			eventually(t, 40*time.Second, func() error {
				if ingressStatus(t, app, "good") == "" {
					return fmt.Errorf("no status yet")
				}
				return nil
			})
			// Postern's Events are about Ingresses; the namespace has the
			// Deployment's, its ReplicaSet's and its Pod's too.
			if out := kubectl(t, "get", "events.events.k8s.io", "--namespace", app, "-o",
				`jsonpath={range .items[?(@.regarding.kind=="Ingress")]}{.metadata.name}{"\n"}{end}`); strings.TrimSpace(out) != "" {
				t.Errorf("Events posted without create on events: %s", out)
			}
		}
	}
}
