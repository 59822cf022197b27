package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/postern-dev/postern/controller"
)

// The synthetic cluster: Ingress i lives in namespace ns-(i mod namespaces),
// serves host app-i.example.com, path / (Prefix), from Service app-i port
// "http", whose EndpointSlice lists endpointsPer ready addresses. The
// addresses are in 127.0.0.0/8 and, in the in-process measurements, never
// dialled.
const (
	namespaces  = 100
	servicePort = 80
	targetPort  = 8080
)

var created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func namespace(i int) string { return fmt.Sprintf("ns-%03d", i%namespaces) }
func name(i int) string      { return fmt.Sprintf("app-%05d", i) }
func host(i int) string      { return name(i) + ".example.com" }

// address returns endpoint j of Ingress i: a distinct loopback address.
func address(i, j, per int) string {
	k := i*per + j + 1
	return fmt.Sprintf("127.%d.%d.%d", 1+(k>>16)&0xff, (k>>8)&0xff, k&0xff)
}

// snapshot returns the objects of n Ingresses with per endpoints each.
func snapshot(n, per int) controller.Snapshot {
	snap := controller.Snapshot{
		IngressClasses: []*networkingv1.IngressClass{{
			ObjectMeta: metav1.ObjectMeta{Name: controller.DefaultIngressClass},
			Spec:       networkingv1.IngressClassSpec{Controller: controller.DefaultControllerClass},
		}},
		Ingresses:      make([]*networkingv1.Ingress, 0, n),
		Services:       make([]*corev1.Service, 0, n),
		EndpointSlices: make([]*discoveryv1.EndpointSlice, 0, n),
	}
	for i := range n {
		snap.Ingresses = append(snap.Ingresses, ingress(i))
		snap.Services = append(snap.Services, service(i))
		snap.EndpointSlices = append(snap.EndpointSlices, endpointSlice(i, addresses(i, per)))
	}
	return snap
}

func ingress(i int) *networkingv1.Ingress {
	class := controller.DefaultIngressClass
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Name: name(i), Namespace: namespace(i),
			CreationTimestamp: metav1.NewTime(created.Add(time.Duration(i) * time.Second)),
		},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{
				Host: host(i),
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: name(i), Port: networkingv1.ServiceBackendPort{Name: "http"},
						}},
					}},
				}},
			}},
		},
	}
}

func service(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name(i), Namespace: namespace(i)},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: servicePort, TargetPort: intstr.FromInt32(targetPort),
		}}},
	}
}

// addresses returns the endpoint addresses of Ingress i.
func addresses(i, per int) []string {
	out := make([]string, per)
	for j := range per {
		out[j] = address(i, j, per)
	}
	return out
}

// endpointSlice returns the EndpointSlice of Ingress i's Service, listing
// addrs as ready endpoints.
func endpointSlice(i int, addrs []string) *discoveryv1.EndpointSlice {
	ready := true
	port := int32(targetPort)
	portName := "http"
	eps := make([]discoveryv1.Endpoint, 0, len(addrs))
	for _, a := range addrs {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name(i) + "-1", Namespace: namespace(i),
			Labels: map[string]string{discoveryv1.LabelServiceName: name(i)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		Endpoints:   eps,
	}
}

// writeManifests writes the objects of n Ingresses as YAML into dir, one
// file per namespace, and the IngressClass into its own file.
func writeManifests(dir string, n, per int) error {
	class := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: %s
spec:
  controller: %s
`, controller.DefaultIngressClass, controller.DefaultControllerClass)
	if err := os.WriteFile(filepath.Join(dir, "class.yaml"), []byte(class), 0o644); err != nil {
		return err
	}
	for ns := range min(n, namespaces) {
		if err := os.WriteFile(manifestFile(dir, ns), namespaceYAML(ns, n, per, -1, "", 0), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manifestFile is the file holding namespace ns-<ns>.
func manifestFile(dir string, ns int) string {
	return filepath.Join(dir, fmt.Sprintf("ns-%03d.yaml", ns))
}

// namespaceYAML renders the objects of the Ingresses in namespace ns-<ns>;
// the EndpointSlice of Ingress changed (if >= 0) lists only the endpoint
// ip:port instead of its own.
func namespaceYAML(ns, n, per, changed int, ip string, port int) []byte {
	var b bytes.Buffer
	for i := ns; i < n; i += namespaces {
		fmt.Fprintf(&b, `---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %[1]s
  namespace: %[2]s
  creationTimestamp: %[3]s
spec:
  ingressClassName: %[4]s
  rules:
    - host: %[5]s
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: %[1]s
                port:
                  name: http
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  ports:
    - name: http
      port: %[6]d
      targetPort: %[7]d
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-1
  namespace: %[2]s
  labels:
    kubernetes.io/service-name: %[1]s
addressType: IPv4
`, name(i), namespace(i), created.Add(time.Duration(i)*time.Second).Format(time.RFC3339),
			controller.DefaultIngressClass, host(i), servicePort, targetPort)
		if i == changed {
			fmt.Fprintf(&b, "ports:\n  - name: http\n    port: %d\nendpoints:\n  - addresses: [%q]\n    conditions: {ready: true}\n", port, ip)
			continue
		}
		fmt.Fprintf(&b, "ports:\n  - name: http\n    port: %d\nendpoints:\n", targetPort)
		for j := range per {
			fmt.Fprintf(&b, "  - addresses: [%q]\n    conditions: {ready: true}\n", address(i, j, per))
		}
	}
	return b.Bytes()
}
