//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// BenchmarkConvergence measures, against the real API server, how fast an
// API write reaches traffic with 1,000 Ingresses and 1,000 Services loaded:
// the time from the write (an endpoint added, an Ingress path added) to the
// first request routed by the new state, p50 and p99 over 50 changes, and
// the time from start to ready. It reports; it asserts only that every
// change arrives. Run it with `make bench-convergence`.
func BenchmarkConvergence(b *testing.B) {
	const (
		objects = 1000
		changes = 50
		class   = "bench"
	)
	ns := namespace(b, "bench")
	// 192.0.2.60 serves every Service at first; .61.. are the endpoints
	// the changes add; .90 serves the paths the changes add.
	addrs := []string{"192.0.2.60:9000", "192.0.2.90:9000"}
	for k := range changes / 2 {
		addrs = append(addrs, fmt.Sprintf("192.0.2.%d:9000", 61+k))
	}
	startEcho(b, "bench", addrs...)

	cs := clientset(b)
	ctx := b.Context()
	createBenchObjects(ctx, b, cs, ns, objects, class)
	p, ready := startBenchPostern(b, ns, objects, class)
	endpointAdded, pathAdded := timeBenchChanges(ctx, b, cs, ns, p, objects, changes)
	reportConvergence(b, objects, ready, endpointAdded, pathAdded)
}

// createBenchObjects creates objects Ingresses of class in ns, one Service
// (and EndpointSlice) each on 192.0.2.60, and the Service added-paths on
// 192.0.2.90 that the paths the changes add route to.
func createBenchObjects(ctx context.Context, b *testing.B, cs kubernetes.Interface, ns string, objects int, class string) {
	b.Helper()
	start := time.Now()
	forEach(b, objects+1, func(i int) error {
		name, addr := fmt.Sprintf("svc-%04d", i), "192.0.2.60"
		if i == objects {
			name, addr = "added-paths", "192.0.2.90"
		}
		if err := createService(ctx, cs, ns, name, addr); err != nil {
			return err
		}
		if i == objects {
			return nil
		}
		_, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, benchIngress(ns, i, class), metav1.CreateOptions{})
		return err
	})
	b.Logf("created %d Ingresses, %d Services and their EndpointSlices in %s", objects, objects+1, time.Since(start).Round(time.Millisecond))
}

// startBenchPostern starts postern on the objects of ns and returns it and
// how long it took from start to ready; it returns once the last Ingress is
// routed.
func startBenchPostern(b *testing.B, ns string, objects int, class string) (*Postern, time.Duration) {
	b.Helper()
	started := time.Now()
	p := startPosternNoWait(b, "--ingress-class", class, "--election-id", "bench", "--watch-namespace", ns)
	eventually(b, 120*time.Second, func() error {
		if code, body := httpGet(p.MetricsAddr, "", "/readyz"); code != 200 {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	ready := time.Since(started)
	p.expectWithin(b, 60*time.Second, benchHost(objects-1), "/", 200, "bench")
	b.Logf("start to ready: %s (first request to the last Ingress routed %s after start)", ready.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	return p, ready
}

// timeBenchChanges makes the changes, alternately an endpoint added to a
// Service and a path added to an Ingress, and returns how long each took
// from the API write to the first request routed by it, by kind of change.
func timeBenchChanges(ctx context.Context, b *testing.B, cs kubernetes.Interface, ns string, p *Postern, objects, changes int) (endpointAdded, pathAdded []time.Duration) {
	b.Helper()
	for k := range changes {
		i := (k * 137) % objects
		host := benchHost(i)
		var (
			path, want string
			t0         time.Time // set just before the API write
			write      func() error
		)
		if k%2 == 0 {
			ip := fmt.Sprintf("192.0.2.%d", 61+k/2)
			path, want = "/", "("+ip+":9000)"
			write = func() error { return addEndpoint(ctx, cs, ns, fmt.Sprintf("svc-%04d", i), ip, &t0) }
		} else {
			path, want = fmt.Sprintf("/added-%d", k), "(192.0.2.90:9000)"
			write = func() error { return addPath(ctx, cs, ns, fmt.Sprintf("app-%04d", i), path, &t0) }
		}
		if err := write(); err != nil {
			b.Fatalf("change %d: %v", k, err)
		}
		took := waitRouted(b, p, t0, host, path, want)
		if k%2 == 0 {
			endpointAdded = append(endpointAdded, took)
		} else {
			pathAdded = append(pathAdded, took)
		}
	}
	return endpointAdded, pathAdded
}

// reportConvergence logs the table of p50, p99 and max by kind of change
// and the time to ready, and reports them as the benchmark's metrics.
func reportConvergence(b *testing.B, objects int, ready time.Duration, endpointAdded, pathAdded []time.Duration) {
	b.Helper()
	all := append(slices.Clone(endpointAdded), pathAdded...)
	var report strings.Builder
	fmt.Fprintf(&report, "\n| %d Ingresses, %d Services | changes | p50 | p99 | max |\n|---|---|---|---|---|\n", objects, objects+1)
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"endpoint added", endpointAdded}, {"Ingress path added", pathAdded}, {"all", all}} {
		fmt.Fprintf(&report, "| %s | %d | %s | %s | %s |\n", row.name, len(row.d),
			quantile(row.d, 0.50), quantile(row.d, 0.99), quantile(row.d, 1))
	}
	fmt.Fprintf(&report, "| start to ready | 1 | %s | | |\n", ready.Round(time.Millisecond))
	b.Log(report.String())
	b.ReportMetric(float64(quantile(all, 0.50).Microseconds())/1000, "ms-p50/change")
	b.ReportMetric(float64(quantile(all, 0.99).Microseconds())/1000, "ms-p99/change")
	b.ReportMetric(ready.Seconds(), "s-to-ready")
}

// waitRouted sends requests back to back until one is answered by the
// backend named by want, and returns how long that took from start.
func waitRouted(b *testing.B, p *Postern, start time.Time, host, path, want string) time.Duration {
	b.Helper()
	for time.Since(start) < 30*time.Second {
		if code, body := p.get(host, path); code == 200 && strings.Contains(firstLine(body), want) {
			return time.Since(start)
		}
	}
	b.Fatalf("GET %s%s never reached %s", host, path, want)
	return 0
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// quantile returns the q-quantile of d by the nearest-rank method.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(100 * time.Microsecond)
}

func benchHost(i int) string { return fmt.Sprintf("app-%04d.bench.example.com", i) }

// forEach runs f(0..n-1) on 16 workers and fails t on the first error.
func forEach(t testing.TB, n int, f func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func createService(ctx context.Context, cs kubernetes.Interface, ns, name, ip string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(9000),
		}}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	portName, port, proto, ready := "http", int32(9000), corev1.ProtocolTCP, true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-1", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
	}
	_, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	return err
}

func benchIngress(ns string, i int, class string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d", i), Namespace: ns},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{
				Host: benchHost(i),
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{benchPath("/", fmt.Sprintf("svc-%04d", i))},
				}},
			}},
		},
	}
}

func benchPath(path, svc string) networkingv1.HTTPIngressPath {
	prefix := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{
		Path: path, PathType: &prefix,
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80},
		}},
	}
}

func addEndpoint(ctx context.Context, cs kubernetes.Interface, ns, svc, ip string, t0 *time.Time) error {
	api := cs.DiscoveryV1().EndpointSlices(ns)
	s, err := api.Get(ctx, svc+"-1", metav1.GetOptions{})
	if err != nil {
		return err
	}
	ready := true
	s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
		Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
	})
	*t0 = time.Now()
	_, err = api.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func addPath(ctx context.Context, cs kubernetes.Interface, ns, name, path string, t0 *time.Time) error {
	ings := cs.NetworkingV1().Ingresses(ns)
	ing, err := ings.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	rule := &ing.Spec.Rules[0].HTTP.Paths
	*rule = append([]networkingv1.HTTPIngressPath{benchPath(path, "added-paths")}, *rule...)
	*t0 = time.Now()
	_, err = ings.Update(ctx, ing, metav1.UpdateOptions{})
	return err
}
