//go:build e2e

package e2e

import (
	"fmt"
	"strings"
)

// service returns a Service and an EndpointSlice whose endpoints are the
// given 192.0.2.x addresses on port 9000 (where startEcho listens).
func service(ns, name string, addrs ...string) string {
	var eps strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&eps, "  - addresses: [%q]\n    conditions: {ready: true}\n", a)
	}
	if len(addrs) == 0 {
		eps.WriteString("  []\n")
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  ports: [{name: http, port: 80, targetPort: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s-1
  namespace: %[1]s
  labels: {kubernetes.io/service-name: %[2]s}
addressType: IPv4
ports: [{name: http, port: 9000, protocol: TCP}]
endpoints:
%[3]s---
`, ns, name, eps.String())
}

// ingress returns an Ingress of class with one rule host -> paths, each
// path a "path=service" pair routed by Prefix to the service's port 80.
func ingress(ns, name, class, host string, paths ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: %s, namespace: %s}\nspec:\n", name, ns)
	if class != "" {
		fmt.Fprintf(&b, "  ingressClassName: %s\n", class)
	}
	fmt.Fprintf(&b, "  rules:\n  - host: %q\n    http:\n      paths:\n", host)
	for _, p := range paths {
		path, svc, _ := strings.Cut(p, "=")
		fmt.Fprintf(&b, "      - {path: %s, pathType: Prefix, backend: {service: {name: %s, port: {number: 80}}}}\n", path, svc)
	}
	b.WriteString("---\n")
	return b.String()
}

// ingressClass returns an IngressClass for controller, the default one
// when isDefault.
func ingressClass(name, controller string, isDefault bool) string {
	ann := ""
	if isDefault {
		ann = "\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}"
	}
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: %s%s\nspec:\n  controller: %s\n---\n", name, ann, controller)
}
