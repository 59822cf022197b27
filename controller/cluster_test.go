package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
)

// These are small unit tests of the wiring with client-go's fake clientset;
// the proof that cluster mode works is the e2e suite against a real API
// server (test/e2e).

func ingressFor(ns, name, host, svc string) *networkingv1.Ingress {
	class := "postern"
	pt := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt, Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}},
				}}},
			}}}},
		},
	}
}

// snapshots collects what a source delivers.
type snapshots struct {
	mu  sync.Mutex
	got []Snapshot
}

func (s *snapshots) add(snap Snapshot, _ []Problem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, snap)
}

func (s *snapshots) waitFor(t *testing.T, what string, ok func(Snapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.got)
		var last Snapshot
		if n > 0 {
			last = s.got[n-1]
		}
		s.mu.Unlock()
		if n > 0 && ok(last) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no snapshot with %s within 10s", what)
}

func TestClusterSourceFollowsChanges(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(
		ingressFor("shop", "web", "shop.example.com", "web"),
		ingressFor("other", "skip", "other.example.com", "x"),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tls"}, Type: corev1.SecretTypeTLS},
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "postern"}},
	)
	src, err := NewClusterSource(client, ClusterOptions{Namespaces: []string{"shop"}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var got snapshots
	go func() { done <- src.Run(ctx, got.add) }()

	got.waitFor(t, "the initial objects of the watched namespace", func(s Snapshot) bool {
		return len(s.Ingresses) == 1 && s.Ingresses[0].Name == "web" && len(s.Services) == 1 &&
			len(s.EndpointSlices) == 1 && len(s.Secrets) == 1 && len(s.IngressClasses) == 1
	})

	if _, err := client.NetworkingV1().Ingresses("shop").Create(ctx, ingressFor("shop", "api", "api.example.com", "api"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "the new Ingress", func(s Snapshot) bool { return len(s.Ingresses) == 2 })
	if err := client.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "the Service gone", func(s Snapshot) bool { return len(s.Services) == 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestStatusWriter(t *testing.T) {
	t.Parallel()
	ours := ingressFor("shop", "web", "shop.example.com", "web")
	foreign := ingressFor("shop", "foreign", "f.example.com", "web")
	other := "nginx"
	foreign.Spec.IngressClassName = &other
	formerlyOurs := ingressFor("shop", "moved", "m.example.com", "web")
	formerlyOurs.Spec.IngressClassName = &other
	formerlyOurs.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.7"}}
	foreign.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "198.51.100.1"}}
	client := fake.NewClientset(ours, foreign, formerlyOurs)

	w := NewStatusWriter(client, StatusOptions{PublishAddresses: []string{"192.0.2.7", "lb.example.net"}}, Options{}, nil, zaptest.NewLogger(t))
	w.sync(context.Background(), Snapshot{Ingresses: []*networkingv1.Ingress{ours, foreign, formerlyOurs}})

	get := func(name string) []networkingv1.IngressLoadBalancerIngress {
		ing, err := client.NetworkingV1().Ingresses("shop").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ing.Status.LoadBalancer.Ingress
	}
	if got := get("web"); len(got) != 2 || got[0].IP != "192.0.2.7" || got[1].Hostname != "lb.example.net" {
		t.Errorf("status of our Ingress = %+v, want 192.0.2.7 and lb.example.net", got)
	}
	if got := get("foreign"); len(got) != 1 || got[0].IP != "198.51.100.1" {
		t.Errorf("status of another controller's Ingress changed: %+v", got)
	}
	if got := get("moved"); len(got) != 1 || got[0].IP != "192.0.2.7" {
		// It holds one of our two addresses, not what we write: another
		// writer's status, left alone.
		t.Errorf("status not written by us was changed: %+v", got)
	}
}

func TestStatusWriterClearsWhatItWrote(t *testing.T) {
	t.Parallel()
	other := "nginx"
	moved := ingressFor("shop", "moved", "m.example.com", "web")
	moved.Spec.IngressClassName = &other
	moved.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.0.2.7"}}
	client := fake.NewClientset(moved)
	w := NewStatusWriter(client, StatusOptions{PublishAddresses: []string{"192.0.2.7"}}, Options{}, nil, zaptest.NewLogger(t))
	w.sync(context.Background(), Snapshot{Ingresses: []*networkingv1.Ingress{moved}})
	ing, err := client.NetworkingV1().Ingresses("shop").Get(context.Background(), "moved", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("status of an Ingress we no longer serve = %+v, want cleared", ing.Status.LoadBalancer.Ingress)
	}
}

func TestServiceAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		svc  corev1.Service
		want string
	}{
		{"load balancer", corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5"}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{
			Ingress: []corev1.LoadBalancerIngress{{Hostname: "lb.example.net"}, {IP: "203.0.113.9"}}}}}, "203.0.113.9/,/lb.example.net"},
		{"external ips", corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", ExternalIPs: []string{"198.51.100.2"}}}, "198.51.100.2/"},
		{"cluster ip", corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5"}}, "10.96.0.5/"},
		{"headless", corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "None"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, a := range ServiceAddresses(&tt.svc) {
				got = append(got, a.IP+"/"+a.Hostname)
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("ServiceAddresses = %q, want %q", strings.Join(got, ","), tt.want)
			}
		})
	}
}

func TestEventReporterPostsOncePerProblem(t *testing.T) {
	t.Parallel()
	ing := ingressFor("shop", "web", "shop.example.com", "web")
	snap := Snapshot{Ingresses: []*networkingv1.Ingress{ing}}
	rec := events.NewFakeRecorder(100)
	leading := true
	r := NewEventReporter(rec, func() bool { return leading })
	p := Problem{Kind: "Ingress", Namespace: "shop", Name: "web", Reason: ReasonServiceNotFound, Message: "service \"web\" not found"}
	file := Problem{Kind: "File", Name: "a.yaml", Reason: ReasonInvalidManifest, Message: "line 3: bad"}

	for range 5 {
		r.Sync(snap, []Problem{p, file})
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("5 builds with one problem posted %d events, want 1", n)
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning ServiceNotFound") || !strings.Contains(e, `service "web" not found`) {
		t.Errorf("event = %q", e)
	}
	r.Sync(snap, nil) // resolved
	r.Sync(snap, []Problem{p})
	if n := len(rec.Events); n != 1 {
		t.Errorf("a problem that came back posted %d events, want 1", n)
	}
	<-rec.Events
	leading = false
	r.Sync(snap, []Problem{p})
	leading = true
	r.Sync(snap, []Problem{p})
	if n := len(rec.Events); n != 1 {
		t.Errorf("after a leadership change the problem posted %d events, want 1 (the new leader posts afresh)", n)
	}
}
