package main

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// The synthetic Gateway API cluster: one GatewayClass of ours, one
// Gateway whose HTTP listener takes routes from every namespace, and n
// HTTPRoutes; route i serves host app-i.example.com with two rules, "/"
// with a header match to Service app-i and "/" to it with weight 100, so
// every host has a route with conditions and one without.

func gatewaySnapshot(n, per int) controller.Snapshot {
	snap := snapshot(n, per)
	snap.Ingresses, snap.IngressClasses = nil, nil
	all := gatewayv1.NamespacesFromAll
	snap.GatewayClasses = []*gatewayv1.GatewayClass{{
		ObjectMeta: metav1.ObjectMeta{Name: "postern"},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: controller.DefaultGatewayControllerName},
	}}
	snap.Gateways = []*gatewayv1.Gateway{{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "infra", CreationTimestamp: metav1.NewTime(created)},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "postern", Listeners: []gatewayv1.Listener{{
			Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType,
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}},
		}}},
	}}
	snap.HTTPRoutes = make([]*gatewayv1.HTTPRoute, 0, n)
	for i := range n {
		snap.HTTPRoutes = append(snap.HTTPRoutes, httpRoute(i))
	}
	return snap
}

func httpRoute(i int) *gatewayv1.HTTPRoute {
	ns := gatewayv1.Namespace("infra")
	port := gatewayv1.PortNumber(servicePort)
	weight := int32(100)
	backend := []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name(i)), Port: &port},
		Weight:                 &weight,
	}}}
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{
			Name: name(i), Namespace: namespace(i),
			CreationTimestamp: metav1.NewTime(created.Add(time.Duration(i) * time.Second)),
		},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge", Namespace: &ns}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(host(i))},
			Rules: []gatewayv1.HTTPRouteRule{
				{
					Matches:     []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "X-Version", Value: "2"}}}},
					BackendRefs: backend,
				},
				{BackendRefs: backend},
			},
		},
	}
}

// gatewayResult is what measureGateway reports.
type gatewayResult struct {
	build                   time.Duration
	hosts, routes, backends int
	snapshotHeap, tableHeap uint64
	apply                   []time.Duration // one endpoint change, incremental
}

// measureGateway builds n HTTPRoutes' table and times one endpoint change
// through the Applier.
func measureGateway(n, per, builds, changes int) gatewayResult {
	before := heap()
	snap := gatewaySnapshot(n, per)
	withSnap := heap()
	opts := controller.Options{Now: created.Add(24 * time.Hour), Certificates: controller.NewCertificateCache()}
	build, table := timedBuilds(snap, opts, builds)
	r := gatewayResult{build: build, snapshotHeap: sub(withSnap, before), tableHeap: sub(heap(), withSnap), hosts: len(table.VirtualHosts), backends: len(table.Backends())}
	for _, vh := range table.VirtualHosts {
		r.routes += len(vh.Routes)
	}

	handler := proxy.New(proxy.Options{Metrics: observe.NewMetrics(prometheus.NewRegistry())})
	var swapped *route.Table
	applier := controller.NewApplier(opts, func(t *route.Table) { handler.Swap(t); swapped = t }, zap.NewNop())
	applier.Apply(snap, nil)
	for c := range changes {
		i := (c*7919 + 42) % n
		addrs := addresses(i, per)
		addrs[0] = fmt.Sprintf("127.253.%d.%d", c/250, c%250+1)
		next := snap
		next.EndpointSlices = slices.Clone(snap.EndpointSlices)
		next.EndpointSlices[i] = endpointSlice(i, addrs)
		runtime.GC()
		start := time.Now()
		applier.Apply(next, nil)
		r.apply = append(r.apply, time.Since(start))
		want := fmt.Sprintf("%s:%d", addrs[0], targetPort)
		if rt := swapped.Lookup(host(i), "/", nil); rt == nil || !slices.ContainsFunc(rt.First().Endpoints, func(e route.Endpoint) bool { return e.Address == want }) {
			panic("the changed endpoint is not in the applied table")
		}
		snap = next
	}
	runtime.KeepAlive(table)
	return r
}
