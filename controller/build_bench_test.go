package controller

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/postern-dev/postern/proxy/route"
)

// benchSnapshot returns n Ingresses of our class, one host and one path
// each, with a Service and an EndpointSlice of five ready endpoints each,
// spread over 100 namespaces: the shape of test/bench/scale.
func benchSnapshot(n int) Snapshot {
	class := DefaultIngressClass
	prefix := networkingv1.PathTypePrefix
	ready := true
	port := int32(8080)
	portName := "http"
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s Snapshot
	s.IngressClasses = []*networkingv1.IngressClass{{
		ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec:       networkingv1.IngressClassSpec{Controller: DefaultControllerClass},
	}}
	for i := range n {
		ns, name := fmt.Sprintf("ns-%02d", i%100), fmt.Sprintf("app-%05d", i)
		s.Ingresses = append(s.Ingresses, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: metav1.NewTime(created.Add(time.Duration(i) * time.Second))},
			Spec: networkingv1.IngressSpec{
				IngressClassName: &class,
				Rules: []networkingv1.IngressRule{{
					Host: name + ".example.com",
					IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
						Paths: []networkingv1.HTTPIngressPath{{
							Path: "/", PathType: &prefix,
							Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
								Name: name, Port: networkingv1.ServiceBackendPort{Name: "http"},
							}},
						}},
					}},
				}},
			},
		})
		s.Services = append(s.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, TargetPort: intstr.FromInt32(port),
			}}},
		})
		eps := make([]discoveryv1.Endpoint, 5)
		for j := range eps {
			eps[j] = discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256*0+j+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			}
		}
		s.EndpointSlices = append(s.EndpointSlices, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: name + "-1", Namespace: ns,
				Labels: map[string]string{discoveryv1.LabelServiceName: name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
			Endpoints:   eps,
		})
	}
	return s
}

// BenchmarkBuild measures a full Build at 1,000 and 10,000 Ingresses.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap := benchSnapshot(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, problems := Build(snap, Options{}); len(problems) != 0 {
					b.Fatalf("problems: %v", problems[0])
				}
			}
		})
	}
}

// BenchmarkApplyEndpointChange measures Applier.Apply at 10,000 Ingresses
// when one EndpointSlice changed: the incremental path (diff against the
// last snapshot, PatchEndpoints), next to BenchmarkBuild/10000.
func BenchmarkApplyEndpointChange(b *testing.B) {
	snap := benchSnapshot(10000)
	a := NewApplier(Options{}, func(*route.Table) {}, zap.NewNop())
	a.Apply(snap, nil)
	next := snap
	next.EndpointSlices = slices.Clone(snap.EndpointSlices)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := snap.EndpointSlices[i%len(snap.EndpointSlices)].DeepCopy()
		c.Endpoints = c.Endpoints[1:]
		next.EndpointSlices[i%len(next.EndpointSlices)] = c
		a.Apply(next, nil)
		i++
	}
}
