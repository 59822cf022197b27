//go:build e2e

package e2e

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Gateway API CRDs are cluster-wide: a test that needs them installs
// them (installGatewayCRDs), and the one that shows Postern picking them up
// when they appear removes them first.

// gatewayCRDs is the folder of the Gateway API's standard CRDs, v1.6.3,
// from the module cache (run.sh finds it).
func gatewayCRDs(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("POSTERN_E2E_GATEWAY_CRDS")
	if dir == "" {
		t.Fatal("POSTERN_E2E_GATEWAY_CRDS is not set: run through test/e2e/run.sh")
	}
	return dir
}

// gatewayCRDNames are the CRDs Postern watches.
var gatewayCRDNames = []string{
	"crd/gatewayclasses.gateway.networking.k8s.io", "crd/gateways.gateway.networking.k8s.io",
	"crd/httproutes.gateway.networking.k8s.io", "crd/grpcroutes.gateway.networking.k8s.io",
	"crd/referencegrants.gateway.networking.k8s.io", "crd/backendtlspolicies.gateway.networking.k8s.io",
}

// installGatewayCRDs applies the standard CRDs and waits until they are
// served.
func installGatewayCRDs(t *testing.T) {
	t.Helper()
	if out, err := kubectlErr("apply", "--server-side", "-f", gatewayCRDs(t)); err != nil {
		t.Fatalf("install the Gateway API CRDs: %v\n%s", err, out)
	}
	kubectl(t, append([]string{"wait", "--for", "condition=Established", "--timeout", "60s"}, gatewayCRDNames...)...)
}

// removeGatewayCRDs deletes the standard CRDs, and with them every Gateway
// API object, and waits until they are gone.
func removeGatewayCRDs(t *testing.T) {
	t.Helper()
	if out, err := kubectlErr("delete", "--ignore-not-found", "--wait", "--timeout", "120s", "-f", gatewayCRDs(t)); err != nil {
		t.Fatalf("remove the Gateway API CRDs: %v\n%s", err, out)
	}
}

// gatewayObjects returns a GatewayClass of controller, and in ns a Gateway
// of it with an HTTP listener and an HTTPS one for secureHost (Secret
// gw-tls), and an HTTPRoute attached to both: /api to Service api, the
// rest to web.
func gatewayObjects(ns, class, controller, secureHost string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: %[2]s}
spec: {controllerName: %[3]s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: %[1]s}
spec:
  gatewayClassName: %[2]s
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - name: https
    protocol: HTTPS
    port: 443
    hostname: %[4]s
    tls: {mode: Terminate, certificateRefs: [{name: gw-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: %[1]s}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.gateway.example.com, %[4]s]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: api, port: 80}]
  - backendRefs: [{name: web, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: %[1]s}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  hostnames: [rpc.gateway.example.com]
  rules:
  - matches: [{method: {service: shop.Orders}}]
    backendRefs: [{name: api, port: 80}]
---
`, ns, class, controller, secureHost)
}

// condition is a status condition as kubectl prints it.
type condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason"`
	ObservedGeneration int64  `json:"observedGeneration"`
	LastTransitionTime string `json:"lastTransitionTime"`
}

// gatewayAPIObject is the part of a Gateway API object the tests read.
type gatewayAPIObject struct {
	Metadata struct {
		Generation      int64  `json:"generation"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Status struct {
		Conditions        []condition `json:"conditions"`
		SupportedFeatures []struct {
			Name string `json:"name"`
		} `json:"supportedFeatures"`
		Addresses []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"addresses"`
		Listeners []struct {
			Name           string      `json:"name"`
			AttachedRoutes int         `json:"attachedRoutes"`
			Conditions     []condition `json:"conditions"`
		} `json:"listeners"`
		Parents []struct {
			ControllerName string      `json:"controllerName"`
			Conditions     []condition `json:"conditions"`
		} `json:"parents"`
	} `json:"status"`
}

// getGatewayAPI reads one Gateway API object ("gateway/edge") in ns (empty
// for a GatewayClass).
func getGatewayAPI(t *testing.T, ns, obj string) gatewayAPIObject {
	t.Helper()
	args := []string{"get", obj, "-o", "json"}
	if ns != "" {
		args = append(args, "--namespace", ns)
	}
	var o gatewayAPIObject
	if err := json.Unmarshal([]byte(kubectl(t, args...)), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// hasCondition reports whether conds hold typ with status and reason (any
// reason when empty), observed at gen.
func hasCondition(conds []condition, typ, status, reason string, gen int64) error {
	for _, c := range conds {
		if c.Type != typ {
			continue
		}
		if c.Status != status || (reason != "" && c.Reason != reason) || c.ObservedGeneration != gen {
			return fmt.Errorf("%s = %s/%s at generation %d, want %s/%s at %d", typ, c.Status, c.Reason, c.ObservedGeneration, status, reason, gen)
		}
		return nil
	}
	return fmt.Errorf("no %s condition in %+v", typ, conds)
}

func conditionOf(conds []condition, typ string) condition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return condition{}
}

// TestGatewayAPICluster: started before the Gateway API CRDs exist,
// Postern says so, serves Ingresses, and picks the CRDs up when they are
// installed. A GatewayClass, a Gateway with HTTP and HTTPS listeners and an
// HTTPRoute are then served (plain and TLS with the listener's
// certificate), and their status written: the class Accepted with its
// features, the Gateway Programmed with the published address and the
// route attached to both listeners, the route Accepted and ResolvedRefs
// under Postern's controller name. Status is written only when it
// changes, keeps a condition's transition time while its status holds,
// and follows the cluster: a Service deleted turns ResolvedRefs False and
// its requests to 500.
func TestGatewayAPICluster(t *testing.T) {
	removeGatewayCRDs(t)
	ns := namespace(t, "gateway")
	const controller, class = "e2e.postern.dev/gateway", "e2e-gateway"
	const secureHost = "secure.gateway.example.com"
	apply(t, ingressClass("gateway", "e2e.postern.dev/gateway-ingress", false)+
		echoDeployment(ns, "web", 1, "v1")+echoDeployment(ns, "api", 1, "v1")+
		ingress(ns, "beside", "gateway", "ingress.gateway.example.com", "/=web"))
	p := startPostern(t, "--ingress-class", "gateway", "--controller-class", "e2e.postern.dev/gateway-ingress", "--election-id", "gateway",
		"--gateway-controller-name", controller, "--publish-status-address", "192.0.2.60")
	logLine(t, p, 20*time.Second, "Gateway API CRDs are not installed")
	p.expectWithin(t, 60*time.Second, "ingress.gateway.example.com", "/", 200, "web")

	installGatewayCRDs(t)
	t.Cleanup(func() { _, _ = kubectlErr("delete", "gatewayclass", class, "--ignore-not-found") })
	logLine(t, p, 40*time.Second, "Gateway API CRDs are installed now")
	secret, _ := tlsSecretYAML(t, ns, "gw-tls", secureHost)
	apply(t, secret+gatewayObjects(ns, class, controller, secureHost))

	p.expectWithin(t, 60*time.Second, "shop.gateway.example.com", "/api/orders", 200, "api")
	p.expect(t, "shop.gateway.example.com", "/", 200, "web")
	p.expect(t, "ingress.gateway.example.com", "/", 200, "web")
	roots := x509.NewCertPool()
	roots.AddCert(cluster.pki.CA)
	eventually(t, 20*time.Second, func() error {
		code, body, err := httpsGet(p.HTTPSAddr, secureHost, "/", roots)
		if err != nil || code != 200 || !servedBy(strings.TrimPrefix(body, "HTTP/2.0 "), "web") {
			return fmt.Errorf("GET https://%s/ = %d %q %w, want 200 from web with the listener's certificate", secureHost, code, lastLines(body, 2), err)
		}
		return nil
	})

	// The status the leader writes.
	eventually(t, 40*time.Second, func() error {
		gc := getGatewayAPI(t, "", "gatewayclass/"+class)
		if err := hasCondition(gc.Status.Conditions, "Accepted", "True", "Accepted", gc.Metadata.Generation); err != nil {
			return fmt.Errorf("GatewayClass: %w", err)
		}
		if !slices.ContainsFunc(gc.Status.SupportedFeatures, func(f struct {
			Name string `json:"name"`
		}) bool {
			return f.Name == "HTTPRoute"
		}) {
			return fmt.Errorf("GatewayClass supportedFeatures = %+v, want HTTPRoute among them", gc.Status.SupportedFeatures)
		}
		gw := getGatewayAPI(t, ns, "gateway/edge")
		for _, typ := range []string{"Accepted", "Programmed"} {
			if err := hasCondition(gw.Status.Conditions, typ, "True", "", gw.Metadata.Generation); err != nil {
				return fmt.Errorf("Gateway: %w", err)
			}
		}
		if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != "192.0.2.60" || gw.Status.Addresses[0].Type != "IPAddress" {
			return fmt.Errorf("Gateway addresses = %+v, want IPAddress 192.0.2.60", gw.Status.Addresses)
		}
		if len(gw.Status.Listeners) != 2 {
			return fmt.Errorf("Gateway listeners = %+v, want two", gw.Status.Listeners)
		}
		for _, l := range gw.Status.Listeners {
			want := map[string]int{"http": 2, "https": 1}[l.Name] // the GRPCRoute names the http listener
			if l.AttachedRoutes != want {
				return fmt.Errorf("listener %s has %d routes attached, want %d", l.Name, l.AttachedRoutes, want)
			}
			if err := hasCondition(l.Conditions, "Programmed", "True", "Programmed", gw.Metadata.Generation); err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
		}
		hr := getGatewayAPI(t, ns, "httproute/shop")
		if len(hr.Status.Parents) != 1 || hr.Status.Parents[0].ControllerName != controller {
			return fmt.Errorf("HTTPRoute parents = %+v, want one of %s", hr.Status.Parents, controller)
		}
		for _, typ := range []string{"Accepted", "ResolvedRefs"} {
			if err := hasCondition(hr.Status.Parents[0].Conditions, typ, "True", "", hr.Metadata.Generation); err != nil {
				return fmt.Errorf("HTTPRoute: %w", err)
			}
		}
		gr := getGatewayAPI(t, ns, "grpcroute/rpc")
		if len(gr.Status.Parents) != 1 || gr.Status.Parents[0].ControllerName != controller {
			return fmt.Errorf("GRPCRoute parents = %+v, want one of %s", gr.Status.Parents, controller)
		}
		return hasCondition(gr.Status.Parents[0].Conditions, "Accepted", "True", "Accepted", gr.Metadata.Generation)
	})

	// The GRPCRoute: HTTP/2 with prior knowledge on the plain listener,
	// its method's service to the api backend (spoken to in h2c), any
	// other service not routed.
	for path, want := range map[string]int{"/shop.Orders/Get": 200, "/shop.Users/Get": 404} {
		code, body, err := h2cPost(t, p.HTTPAddr, "rpc.gateway.example.com", path)
		if err != nil || code != want || (want == 200 && !servedBy(body, "api")) {
			t.Errorf("h2c POST rpc.gateway.example.com%s = %d %q %v, want %d (from api)", path, code, lastLines(body, 2), err, want)
		}
		if want == 200 && !strings.Contains(body, "HTTP/2.0") {
			t.Errorf("the api backend saw %q, want an HTTP/2 request (a gRPC backend is spoken to in h2c)", lastLines(body, 4))
		}
	}

	// Written once: other changes (an Ingress, a new endpoint) bring new
	// snapshots but no new status.
	before := map[string]string{}
	for _, o := range []string{"gateway/edge", "httproute/shop", "grpcroute/rpc"} {
		before[o] = getGatewayAPI(t, ns, o).Metadata.ResourceVersion
	}
	before["gatewayclass"] = getGatewayAPI(t, "", "gatewayclass/"+class).Metadata.ResourceVersion
	apply(t, ingress(ns, "later", "gateway", "later.gateway.example.com", "/=api"))
	p.expect(t, "later.gateway.example.com", "/", 200, "api")
	time.Sleep(time.Second) // the status writer runs after the table is swapped
	for _, o := range []string{"gateway/edge", "httproute/shop", "grpcroute/rpc"} {
		if rv := getGatewayAPI(t, ns, o).Metadata.ResourceVersion; rv != before[o] {
			t.Errorf("%s was written again with nothing changed (resourceVersion %s, then %s)", o, before[o], rv)
		}
	}
	if rv := getGatewayAPI(t, "", "gatewayclass/"+class).Metadata.ResourceVersion; rv != before["gatewayclass"] {
		t.Errorf("the GatewayClass was written again with nothing changed")
	}

	// The api Service goes: its rule answers 500, the route's ResolvedRefs
	// turns False, Accepted keeps its transition time.
	accepted := conditionOf(getGatewayAPI(t, ns, "httproute/shop").Status.Parents[0].Conditions, "Accepted").LastTransitionTime
	time.Sleep(1100 * time.Millisecond) // transition times have seconds
	kubectl(t, "delete", "service", "api", "--namespace", ns)
	p.expect(t, "shop.gateway.example.com", "/api/orders", 500, "")
	eventually(t, 20*time.Second, func() error {
		hr := getGatewayAPI(t, ns, "httproute/shop")
		conds := hr.Status.Parents[0].Conditions
		if err := hasCondition(conds, "ResolvedRefs", "False", "BackendNotFound", hr.Metadata.Generation); err != nil {
			return err
		}
		if got := conditionOf(conds, "Accepted").LastTransitionTime; got != accepted {
			return fmt.Errorf("Accepted moved from %s to %s though it stayed True", accepted, got)
		}
		if conditionOf(conds, "ResolvedRefs").LastTransitionTime == accepted {
			return fmt.Errorf("ResolvedRefs changed status but kept its transition time %s", accepted)
		}
		return nil
	})

	// The route edited (a new generation): served and observed.
	apply(t, strings.Replace(gatewayObjects(ns, class, controller, secureHost), "value: /api", "value: /v2", 1))
	p.expect(t, "shop.gateway.example.com", "/v2/x", 500, "")
	p.expect(t, "shop.gateway.example.com", "/api/orders", 200, "web")
	eventually(t, 20*time.Second, func() error {
		hr := getGatewayAPI(t, ns, "httproute/shop")
		return hasCondition(hr.Status.Parents[0].Conditions, "Accepted", "True", "", hr.Metadata.Generation)
	})
	noForbidden(t, p)
}

// TestRBACGatewayAPI: installed with gatewayAPI.enabled, the chart's
// GatewayClass is served and its RBAC is enough to watch the Gateway API
// kinds and write their status, as the chart's ServiceAccount, with
// nothing forbidden; without gatewayAPI.enabled the ServiceAccount can do
// nothing with them.
func TestRBACGatewayAPI(t *testing.T) {
	installGatewayCRDs(t)
	h, dir := chartHelm(t)
	rel := namespace(t, "rbacgw-postern")
	app := namespace(t, "rbacgw-app")
	m := installChartNoPods(t, h, dir, "rbacgw", rel, "--set", strings.Join([]string{
		"ingressClass.name=rbacgw", "ingressClass.controller=e2e.postern.dev/rbacgw", "electionID=rbacgw-leader",
		"gatewayAPI.enabled=true", "gatewayAPI.controllerName=e2e.postern.dev/rbacgw-gateway", "gatewayAPI.gatewayClass.name=rbacgw",
	}, ","))
	apply(t, echoWorkload(app, "web", "rbacgw", 1, "v1")+fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: %[1]s}
spec:
  gatewayClassName: rbacgw
  listeners:
  - {name: http, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: %[1]s}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: %[1]s}
spec:
  parentRefs: [{name: edge}]
  hostnames: [gw.rbac.example.com]
  rules:
  - backendRefs: [{name: web, port: 80}]
---
`, app))
	p := startAsChart(t, m, rel, true)
	p.expectWithin(t, 60*time.Second, "gw.rbac.example.com", "/", 200, "rbacgw")

	clusterIP := kubectl(t, "get", "service", fullname(t, m), "--namespace", rel, "-o", "jsonpath={.spec.clusterIP}")
	eventually(t, 40*time.Second, func() error {
		gc := getGatewayAPI(t, "", "gatewayclass/rbacgw")
		if err := hasCondition(gc.Status.Conditions, "Accepted", "True", "", gc.Metadata.Generation); err != nil {
			return fmt.Errorf("GatewayClass: %w", err)
		}
		gw := getGatewayAPI(t, app, "gateway/edge")
		if err := hasCondition(gw.Status.Conditions, "Programmed", "True", "", gw.Metadata.Generation); err != nil {
			return fmt.Errorf("Gateway: %w", err)
		}
		if len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != clusterIP {
			return fmt.Errorf("Gateway addresses = %+v, want the chart Service's %s", gw.Status.Addresses, clusterIP)
		}
		hr := getGatewayAPI(t, app, "httproute/web")
		if len(hr.Status.Parents) != 1 {
			return fmt.Errorf("HTTPRoute parents = %+v", hr.Status.Parents)
		}
		return hasCondition(hr.Status.Parents[0].Conditions, "Accepted", "True", "", hr.Metadata.Generation)
	})
	noForbidden(t, p)

	name := fullname(t, m)
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"list", "httproutes.gateway.networking.k8s.io", "--all-namespaces"}, true},
		{[]string{"update", "httproutes.gateway.networking.k8s.io", "--subresource", "status", "--namespace", app}, true},
		{[]string{"update", "httproutes.gateway.networking.k8s.io", "--namespace", app}, false},
		{[]string{"list", "grpcroutes.gateway.networking.k8s.io", "--all-namespaces"}, true},
		{[]string{"update", "grpcroutes.gateway.networking.k8s.io", "--subresource", "status", "--namespace", app}, true},
		{[]string{"update", "grpcroutes.gateway.networking.k8s.io", "--namespace", app}, false},
		{[]string{"list", "backendtlspolicies.gateway.networking.k8s.io", "--all-namespaces"}, true},
		{[]string{"update", "backendtlspolicies.gateway.networking.k8s.io", "--subresource", "status", "--namespace", app}, true},
		{[]string{"create", "gateways.gateway.networking.k8s.io", "--namespace", app}, false},
		{[]string{"update", "gatewayclasses.gateway.networking.k8s.io", "--subresource", "status"}, true},
		{[]string{"update", "gatewayclasses.gateway.networking.k8s.io"}, false},
		{[]string{"list", "namespaces"}, true},
		{[]string{"get", "namespaces"}, false},
	} {
		if got := canI(t, rel, name, tc.args...); got != tc.want {
			t.Errorf("can the ServiceAccount %s? %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// h2cPost sends a POST of path to host over HTTP/2 without TLS, with
// prior knowledge (a gRPC client's way), to addr.
func h2cPost(t *testing.T, addr, host, path string) (int, string, error) {
	tr := &http.Transport{Proxy: nil, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+path, strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 {
		return resp.StatusCode, string(body), fmt.Errorf("answered in %s, not HTTP/2", resp.Proto)
	}
	return resp.StatusCode, string(body), err
}
