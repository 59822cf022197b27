package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// gatewayObjects are a class of ours, a Gateway of it and a route attached
// to it, with a parent status another controller wrote on the route.
func gatewayObjects() (*gatewayv1.GatewayClass, *gatewayv1.Gateway, *gatewayv1.HTTPRoute) {
	gc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: "postern", Generation: 1},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: DefaultGatewayControllerName},
	}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge", Generation: 2},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "postern", Listeners: []gatewayv1.Listener{
			{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
		}},
	}
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "web", Generation: 3},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{
				{Name: "edge"}, {Name: "elsewhere"},
			}},
			Hostnames: []gatewayv1.Hostname{"web.example.com"},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To(gatewayv1.PortNumber(80))},
			}}}}},
		},
		Status: gatewayv1.HTTPRouteStatus{RouteStatus: gatewayv1.RouteStatus{Parents: []gatewayv1.RouteParentStatus{{
			ParentRef:      gatewayv1.ParentReference{Name: "elsewhere"},
			ControllerName: "example.com/other",
			Conditions:     []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Unix(1000, 0)}},
		}}}},
	}
	return gc, gw, hr
}

// grpcRouteOf is a GRPCRoute attached to the Gateway of gatewayObjects.
func grpcRouteOf(name, host string) *gatewayv1.GRPCRoute {
	return &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: name, Generation: 4},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(host)},
			Rules: []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web", Port: ptr.To(gatewayv1.PortNumber(80))},
			}}}}},
		},
	}
}

func TestGatewayStatusWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gc, gw, hr := gatewayObjects()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	gr := grpcRouteOf("rpc", "rpc.example.com")
	gcs := gatewayFake(t, gc, gw, hr, gr)
	w := NewStatusWriter(fake.NewClientset(), StatusOptions{PublishAddresses: []string{"192.0.2.7", "lb.example.net"}}, Options{}, nil, zaptest.NewLogger(t))
	w.WriteGatewayAPI(gcs, "")

	snap := Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{gc}, Gateways: []*gatewayv1.Gateway{gw},
		HTTPRoutes: []*gatewayv1.HTTPRoute{hr}, GRPCRoutes: []*gatewayv1.GRPCRoute{gr}, Services: []*corev1.Service{svc}}
	_, _, st := build(snap, Options{})
	first := metav1.Unix(2000, 0)
	w.syncGatewayAPI(ctx, snap, st, w.gatewayAddrs(ctx, snap), first)

	gotClass, err := gcs.GatewayV1().GatewayClasses().Get(ctx, "postern", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCond(gotClass.Status.Conditions, "Accepted"); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 1 || !c.LastTransitionTime.Equal(&first) {
		t.Errorf("class Accepted = %+v, want True at generation 1, since %v", c, first)
	}
	if len(gotClass.Status.SupportedFeatures) != len(sharedFeatures) {
		t.Errorf("class lists %d supported features, want %d", len(gotClass.Status.SupportedFeatures), len(sharedFeatures))
	}

	gotGW, err := gcs.GatewayV1().Gateways("infra").Get(ctx, "edge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCond(gotGW.Status.Conditions, "Programmed"); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 2 {
		t.Errorf("Gateway Programmed = %+v, want True at generation 2", c)
	}
	wantAddrs := []gatewayv1.GatewayStatusAddress{
		{Type: ptr.To(gatewayv1.IPAddressType), Value: "192.0.2.7"},
		{Type: ptr.To(gatewayv1.HostnameAddressType), Value: "lb.example.net"},
	}
	if len(gotGW.Status.Addresses) != 2 || *gotGW.Status.Addresses[0].Type != *wantAddrs[0].Type || gotGW.Status.Addresses[0].Value != wantAddrs[0].Value ||
		*gotGW.Status.Addresses[1].Type != *wantAddrs[1].Type || gotGW.Status.Addresses[1].Value != wantAddrs[1].Value {
		t.Errorf("Gateway addresses = %+v, want %+v", gotGW.Status.Addresses, wantAddrs)
	}
	if len(gotGW.Status.Listeners) != 1 || gotGW.Status.Listeners[0].AttachedRoutes != 2 {
		t.Errorf("listeners = %+v, want one with the two routes attached", gotGW.Status.Listeners)
	}

	gotRoute, err := gcs.GatewayV1().HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parents := gotRoute.Status.Parents
	if len(parents) != 2 || parents[0].ControllerName != "example.com/other" || parents[1].ControllerName != DefaultGatewayControllerName ||
		parents[1].ParentRef.Name != "edge" {
		t.Fatalf("route parents = %+v, want the other controller's entry kept, then ours for edge", parents)
	}
	if c := findCond(parents[1].Conditions, "Accepted"); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 3 {
		t.Errorf("route Accepted = %+v, want True at generation 3", c)
	}

	gotGRPC, err := gcs.GatewayV1().GRPCRoutes("infra").Get(ctx, "rpc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ps := gotGRPC.Status.Parents; len(ps) != 1 || ps[0].ControllerName != DefaultGatewayControllerName {
		t.Fatalf("GRPCRoute parents = %+v, want ours for edge", ps)
	} else if c := findCond(ps[0].Conditions, "Accepted"); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 4 {
		t.Errorf("GRPCRoute Accepted = %+v, want True at generation 4", c)
	}

	// Written once: the same status again writes nothing.
	n := len(gcs.Actions())
	snap2 := Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{gotClass}, Gateways: []*gatewayv1.Gateway{gotGW},
		HTTPRoutes: []*gatewayv1.HTTPRoute{gotRoute}, GRPCRoutes: []*gatewayv1.GRPCRoute{gotGRPC}, Services: snap.Services}
	_, _, st = build(snap2, Options{})
	w.syncGatewayAPI(ctx, snap2, st, w.gatewayAddrs(ctx, snap2), metav1.Unix(3000, 0))
	if extra := gcs.Actions()[n:]; len(extra) != 0 {
		t.Errorf("an unchanged status was written again: %v", extra)
	}

	// The Service goes: ResolvedRefs turns False and its transition time
	// moves; Accepted stays True and keeps its own.
	later := metav1.Unix(4000, 0)
	snap3 := snap2
	snap3.Services = nil
	_, _, st = build(snap3, Options{})
	w.syncGatewayAPI(ctx, snap3, st, w.gatewayAddrs(ctx, snap3), later)
	gotRoute, err = gcs.GatewayV1().HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ours := gotRoute.Status.Parents[1].Conditions
	if c := findCond(ours, "ResolvedRefs"); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "BackendNotFound" || !c.LastTransitionTime.Equal(&later) {
		t.Errorf("ResolvedRefs = %+v, want False BackendNotFound since %v", c, later)
	}
	if c := findCond(ours, "Accepted"); c == nil || !c.LastTransitionTime.Equal(&first) {
		t.Errorf("Accepted = %+v, want its transition time kept at %v", c, first)
	}

	// The route leaves our Gateway: only our parent entry goes.
	moved := gotRoute.DeepCopy()
	moved.Spec.ParentRefs = []gatewayv1.ParentReference{{Name: "elsewhere"}}
	snap4 := snap3
	snap4.HTTPRoutes = []*gatewayv1.HTTPRoute{moved}
	_, _, st = build(snap4, Options{})
	w.syncGatewayAPI(ctx, snap4, st, nil, later)
	gotRoute, err = gcs.GatewayV1().HTTPRoutes("infra").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := gotRoute.Status.Parents; len(p) != 1 || p[0].ControllerName != "example.com/other" {
		t.Errorf("parents of a route no longer ours = %+v, want only the other controller's", p)
	}
}

func TestGatewayStatusKeepsAddressesWhenUnresolved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gc, gw, _ := gatewayObjects()
	gw.Status.Addresses = []gatewayv1.GatewayStatusAddress{{Type: ptr.To(gatewayv1.IPAddressType), Value: "192.0.2.9"}}
	gcs := gatewayFake(t, gc, gw)
	// The published Service does not exist: its address cannot be read now.
	w := NewStatusWriter(fake.NewClientset(), StatusOptions{PublishService: "infra/missing"}, Options{}, nil, zaptest.NewLogger(t))
	w.WriteGatewayAPI(gcs, "")
	snap := Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{gc}, Gateways: []*gatewayv1.Gateway{gw}}
	_, _, st := build(snap, Options{})
	addrs := w.gatewayAddrs(ctx, snap)
	if addrs != nil {
		t.Fatalf("addresses of a missing Service = %+v, want nil (keep)", addrs)
	}
	w.syncGatewayAPI(ctx, snap, st, addrs, metav1.NewTime(time.Unix(5000, 0)))
	got, err := gcs.GatewayV1().Gateways("infra").Get(ctx, "edge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Addresses) != 1 || got.Status.Addresses[0].Value != "192.0.2.9" {
		t.Errorf("addresses = %+v, want the one written before kept", got.Status.Addresses)
	}
	if c := findCond(got.Status.Conditions, "Accepted"); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("conditions not written: %+v", got.Status.Conditions)
	}
}

// gatewayFake is a fake Gateway API clientset holding objs. They are
// added under their resource's real name: the fake guesses "gatewaies"
// from the kind Gateway.
func gatewayFake(t *testing.T, objs ...runtime.Object) *gatewayfake.Clientset {
	t.Helper()
	c := gatewayfake.NewSimpleClientset()
	for _, o := range objs {
		var res, ns string
		switch o := o.(type) {
		case *gatewayv1.GatewayClass:
			res = gatewayClassesResource
		case *gatewayv1.Gateway:
			res, ns = gatewaysResource, o.Namespace
		case *gatewayv1.HTTPRoute:
			res, ns = httpRoutesResource, o.Namespace
		case *gatewayv1.GRPCRoute:
			res, ns = grpcRoutesResource, o.Namespace
		default:
			t.Fatalf("gatewayFake: %T", o)
		}
		if err := c.Tracker().Create(schema.GroupVersion(gatewayv1.GroupVersion).WithResource(res), o, ns); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func findCond(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func TestClusterSourceWatchesGatewayAPI(t *testing.T) {
	t.Parallel()
	gc, gw, hr := gatewayObjects()
	client := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infra", Labels: map[string]string{"team": "edge"}}})
	client.Resources = []*metav1.APIResourceList{{GroupVersion: gatewayv1.GroupVersion.String(), APIResources: []metav1.APIResource{
		{Name: "gatewayclasses"}, {Name: "gateways"}, {Name: "httproutes"}, {Name: "grpcroutes"}, {Name: "referencegrants"},
	}}}
	gcs := gatewayFake(t, gc, gw, hr, grpcRouteOf("rpc", "rpc.example.com"))
	src, err := NewClusterSource(client, ClusterOptions{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	src.WatchGatewayAPI(gcs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got snapshots
	go func() { _ = src.Run(ctx, got.add) }()
	got.waitFor(t, "the Gateway API objects in the first snapshot", func(s Snapshot) bool {
		return len(s.GatewayClasses) == 1 && len(s.Gateways) == 1 && len(s.HTTPRoutes) == 1 && len(s.GRPCRoutes) == 1 &&
			len(s.Namespaces) == 1 && s.Namespaces[0].Labels["team"] == "edge"
	})
	if _, err := gcs.GatewayV1().HTTPRoutes("infra").Create(ctx, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "api"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got.waitFor(t, "the new HTTPRoute", func(s Snapshot) bool { return len(s.HTTPRoutes) == 2 })
}

func TestClusterSourceWithoutGatewayAPI(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(ingressFor("shop", "web", "shop.example.com", "web"))
	src, err := NewClusterSource(client, ClusterOptions{GatewayDiscoveryEvery: time.Hour}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	gc, _, _ := gatewayObjects()
	src.WatchGatewayAPI(gatewayFake(t, gc))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got snapshots
	go func() { _ = src.Run(ctx, got.add) }()
	// The CRDs are not served: the Ingresses are, and no Gateway API
	// object is read.
	got.waitFor(t, "the Ingress without the Gateway API", func(s Snapshot) bool {
		return len(s.Ingresses) == 1 && len(s.GatewayClasses) == 0
	})
}

func TestStatusOnly(t *testing.T) {
	t.Parallel()
	_, gw, _ := gatewayObjects()
	written := gw.DeepCopy()
	written.Status.Conditions = []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue}}
	if !statusOnly(gw, gw, written) {
		t.Error("a status write counts as a change")
	}
	edited := gw.DeepCopy()
	edited.Generation++
	if statusOnly(gw, gw, edited) {
		t.Error("a spec change (new generation) counts as status only")
	}
	labelled := gw.DeepCopy()
	labelled.Labels = map[string]string{"a": "b"}
	if statusOnly(gw, gw, labelled) {
		t.Error("a label change counts as status only")
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	if statusOnly(svc, svc, svc.DeepCopy()) {
		t.Error("a Service update counts as status only; Build reads more than a Service's spec")
	}
}

// TestStatusWriterRetriesConflicts: a write refused for a stale
// resourceVersion (the cache behind the API server) is made again from
// the object as the API server has it, since no informer event follows
// a change of status alone.
func TestStatusWriterRetriesConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gc, gw, _ := gatewayObjects()
	gcs := gatewayFake(t, gc, gw)
	conflicts := 0
	gcs.PrependReactor("update", "gateways", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts == 0 {
			conflicts++
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: gatewayv1.GroupName, Resource: "gateways"}, "edge", fmt.Errorf("stale"))
		}
		return false, nil, nil
	})
	w := NewStatusWriter(fake.NewClientset(), StatusOptions{}, Options{}, nil, zaptest.NewLogger(t))
	w.WriteGatewayAPI(gcs, "")
	snap := Snapshot{GatewayClasses: []*gatewayv1.GatewayClass{gc}, Gateways: []*gatewayv1.Gateway{gw}}
	_, _, st := build(snap, Options{})
	w.syncGatewayAPI(ctx, snap, st, w.gatewayAddrs(ctx, snap), metav1.Unix(6000, 0))
	got, err := gcs.GatewayV1().Gateways("infra").Get(ctx, "edge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != 1 || findCond(got.Status.Conditions, "Programmed") == nil {
		t.Errorf("after %d conflicts the Gateway status is %+v, want it written on the second try", conflicts, got.Status)
	}
}
