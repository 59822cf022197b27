package controller

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// mutateSlices returns a copy of snap whose EndpointSlices changed at
// random the way a cluster changes them (addresses added, removed, made
// ready or terminating; a slice deleted; a slice added for a Service), and
// the Services whose slices changed. Every other object keeps its pointer.
func mutateSlices(rng *rand.Rand, snap Snapshot) (Snapshot, map[types.NamespacedName]bool) {
	out := snap
	out.EndpointSlices = nil
	changed := make(map[types.NamespacedName]bool)
	mark := func(s *discoveryv1.EndpointSlice) {
		if k, ok := sliceService(s); ok {
			changed[k] = true
		}
	}
	for _, s := range snap.EndpointSlices {
		if s == nil || rng.IntN(3) != 0 {
			out.EndpointSlices = append(out.EndpointSlices, s)
			continue
		}
		mark(s)
		if rng.IntN(5) == 0 {
			continue // deleted
		}
		c := s.DeepCopy()
		switch rng.IntN(4) {
		case 0: // an address added
			ip := fmt.Sprintf("10.99.%d.%d", rng.IntN(256), 1+rng.IntN(254))
			if c.AddressType == discoveryv1.AddressTypeIPv6 {
				ip = fmt.Sprintf("fd00::%x", 1+rng.IntN(65000))
			}
			c.Endpoints = append(c.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
		case 1: // an address removed
			if len(c.Endpoints) > 0 {
				i := rng.IntN(len(c.Endpoints))
				c.Endpoints = append(c.Endpoints[:i], c.Endpoints[i+1:]...)
			}
		case 2: // not ready, terminating but serving
			f, tr := false, true
			for i := range c.Endpoints {
				if rng.IntN(2) == 0 {
					c.Endpoints[i].Conditions = discoveryv1.EndpointConditions{Ready: &f, Serving: &tr, Terminating: &tr}
				}
			}
		case 3: // everything gone
			c.Endpoints = nil
		}
		out.EndpointSlices = append(out.EndpointSlices, c)
	}
	// A new slice for a Service that may have had none.
	if len(snap.Services) > 0 && rng.IntN(2) == 0 {
		svc := snap.Services[rng.IntN(len(snap.Services))]
		if svc != nil && len(svc.Spec.Ports) > 0 {
			name := svc.Spec.Ports[0].Name
			port := int32(9000 + rng.IntN(100))
			s := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Name: svc.Name + "-patch", Namespace: svc.Namespace,
					Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name},
				},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.98.0.%d", 1+rng.IntN(254))}}},
			}
			out.EndpointSlices = append(out.EndpointSlices, s)
			mark(s)
		}
	}
	return out, changed
}

// PatchEndpoints must give exactly what a full Build gives, on every golden
// case and on a larger generated snapshot, over many random endpoint
// changes in a row.
func TestPatchEndpointsMatchesBuild(t *testing.T) {
	t.Parallel()
	cases := goldenCaseNames(t)
	type input struct {
		name string
		snap Snapshot
		opts Options
	}
	var inputs []input
	for _, name := range cases {
		snap, opts := loadGoldenCase(t, name)
		inputs = append(inputs, input{name, snap, opts})
	}
	inputs = append(inputs, input{"generated-300", benchSnapshot(300), Options{Now: goldenNow}})
	rng := rand.New(rand.NewPCG(1, 2))
	for _, in := range inputs {
		snap := in.snap
		table, problems := Build(snap, in.opts)
		for step := range 8 {
			next, changed := mutateSlices(rng, snap)
			patched := PatchEndpoints(table, next, changed)
			want, wantProblems := Build(next, in.opts)
			gotT, gotP := renderGolden(patched, problems)
			wantT, wantP := renderGolden(want, wantProblems)
			if !bytes.Equal(gotT, wantT) {
				t.Fatalf("%s, change %d: the patched table differs from Build's (-build +patched):\n%s", in.name, step, goldenDiff(string(wantT), string(gotT)))
			}
			if !bytes.Equal(gotP, wantP) {
				t.Fatalf("%s, change %d: an endpoint change changed the problems (-build +before):\n%s", in.name, step, goldenDiff(string(wantP), string(gotP)))
			}
			// Lookups agree too (the table's maps, not only its JSON).
			for _, vh := range want.VirtualHosts {
				for _, r := range vh.Routes {
					host := strings.Replace(vh.Host, "*", "x", 1)
					if g, w := patched.Lookup(host, r.Path, nil), want.Lookup(host, r.Path, nil); !sameRoute(g, w) {
						t.Fatalf("%s, change %d: Lookup(%q, %q) = %+v, Build's table says %+v", in.name, step, host, r.Path, g, w)
					}
				}
			}
			snap, table = next, patched
		}
	}
}

func sameRoute(a, b *route.Route) bool {
	if a == nil || b == nil {
		return a == b
	}
	ja, jb := goldenYAML(a), goldenYAML(b)
	return bytes.Equal(ja, jb)
}

// The patch copies only the virtual hosts whose routes use a changed
// backend; the rest are shared with the previous table, which is left as
// it was.
func TestPatchEndpointsSharesTheRest(t *testing.T) {
	t.Parallel()
	snap := benchSnapshot(50)
	table, _ := Build(snap, Options{})
	before := goldenYAML(table)
	next := snap
	next.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), snap.EndpointSlices...)
	c := next.EndpointSlices[7].DeepCopy()
	c.Endpoints = c.Endpoints[:1]
	next.EndpointSlices[7] = c
	k, _ := sliceService(c)
	patched := PatchEndpoints(table, next, map[types.NamespacedName]bool{k: true})
	if !bytes.Equal(goldenYAML(table), before) {
		t.Fatal("PatchEndpoints changed the table it was given")
	}
	copied := 0
	for i, vh := range patched.VirtualHosts {
		if vh != table.VirtualHosts[i] {
			copied++
			if got := len(vh.Routes[0].First().Endpoints); got != 1 {
				t.Errorf("%s: %d endpoints after the patch, want 1", vh.Host, got)
			}
		}
	}
	if copied != 1 {
		t.Errorf("%d virtual hosts copied, want 1 (the one whose Service changed)", copied)
	}
}

// The Applier takes the incremental path when only EndpointSlices changed,
// and builds in full otherwise.
func TestApplierPatchesEndpointChanges(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	var swapped *route.Table
	a := NewApplier(Options{}, func(t *route.Table) { swapped = t }, zap.New(core))
	snap := benchSnapshot(20)
	incremental := func() bool {
		var entries []observer.LoggedEntry
		for _, e := range logs.TakeAll() {
			if e.Message == "routing table applied" {
				entries = append(entries, e)
			}
		}
		if len(entries) != 1 {
			t.Fatalf("%d 'routing table applied' lines, want 1", len(entries))
		}
		v, _ := entries[0].ContextMap()["incremental"].(bool)
		return v
	}
	check := func(s Snapshot, wantIncremental bool, what string) {
		t.Helper()
		a.Apply(s, nil)
		if got := incremental(); got != wantIncremental {
			t.Errorf("%s: incremental = %v, want %v", what, got, wantIncremental)
		}
		want, _ := Build(s, Options{Now: time.Now()})
		if g, w := goldenYAML(swapped), goldenYAML(want); !bytes.Equal(g, w) {
			t.Errorf("%s: the table differs from Build's:\n%s", what, goldenDiff(string(w), string(g)))
		}
	}
	check(snap, false, "first snapshot")

	next := snap
	next.EndpointSlices = append([]*discoveryv1.EndpointSlice(nil), snap.EndpointSlices...)
	c := next.EndpointSlices[3].DeepCopy()
	c.Endpoints = c.Endpoints[2:]
	next.EndpointSlices[3] = c
	check(next, true, "one EndpointSlice changed")
	check(next, true, "nothing changed")

	changedIng := next
	changedIng.Ingresses = slices.Clone(next.Ingresses)
	ing := next.Ingresses[5].DeepCopy()
	ing.Spec.Rules[0].Host = "renamed.example.com"
	changedIng.Ingresses[5] = ing
	check(changedIng, false, "an Ingress changed")

	dup := changedIng
	dup.Services = slices.Clone(changedIng.Services)
	dup.Services[1] = dup.Services[0] // same count, one pointer twice
	check(dup, false, "a Service replaced by another one's pointer")

	// The Gateway API objects count too: a changed HTTPRoute is built.
	gw, _ := loadGoldenCase(t, "gateway-http")
	withGW := changedIng
	withGW.GatewayClasses, withGW.Gateways, withGW.HTTPRoutes = gw.GatewayClasses, gw.Gateways, gw.HTTPRoutes
	check(withGW, false, "Gateway API objects added")
	check(withGW, true, "nothing changed, with Gateway API objects")
	changedRoute := withGW
	changedRoute.HTTPRoutes = slices.Clone(withGW.HTTPRoutes)
	hr := withGW.HTTPRoutes[0].DeepCopy()
	hr.Spec.Hostnames[0] = "renamed.example.com"
	changedRoute.HTTPRoutes[0] = hr
	check(changedRoute, false, "an HTTPRoute changed")
}

// goldenCaseNames lists the golden cases in testdata.
func goldenCaseNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "fuzz" {
			if _, err := os.Stat("testdata/" + e.Name() + "/input.yaml"); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) < minGoldenCases {
		t.Fatalf("%d golden cases found, want at least %d", len(names), minGoldenCases)
	}
	return names
}

// A file read again keeps the pointers of the objects that did not change,
// so that the Applier sees which did.
func TestKeepUnchanged(t *testing.T) {
	t.Parallel()
	doc := func(addr string) string {
		return `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [` + addr + `]}]
`
	}
	first := decodeFile([]byte(doc("10.0.0.1")), zap.NewNop()).objects
	again := keepUnchanged(first, decodeFile([]byte(doc("10.0.0.1")), zap.NewNop()).objects)
	changed := keepUnchanged(again, decodeFile([]byte(doc("10.0.0.2")), zap.NewNop()).objects)
	if len(first) != 2 || len(again) != 2 || len(changed) != 2 {
		t.Fatalf("decoded %d, %d, %d objects, want 2 each", len(first), len(again), len(changed))
	}
	for i := range first {
		if again[i].obj != first[i].obj {
			t.Errorf("%s: an identical document got a new object", first[i].kind)
		}
	}
	if changed[0].obj != first[0].obj {
		t.Error("the unchanged Service got a new object")
	}
	if changed[1].obj == first[1].obj {
		t.Error("the changed EndpointSlice kept its old object")
	}
}
