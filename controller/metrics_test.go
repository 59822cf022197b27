package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/postern-dev/postern/proxy/route"
)

// series returns the series of the family name in reg as
// `label="value",... value` lines (sample count for histograms), sorted.
func series(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out = append(out, fmt.Sprintf("{%s} %g", strings.Join(labels, ","), v))
		}
	}
	slices.Sort(out)
	return out
}

func checkSeries(t *testing.T, reg *prometheus.Registry, name string, want ...string) {
	t.Helper()
	got := series(t, reg, name)
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

func TestApplierMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var swapped *route.Table
	a := NewApplier(Options{}, func(t *route.Table) { swapped = t }, zap.NewNop())
	a.SetMetrics(m)

	// Nothing built yet: both results exist at 0, no problems.
	checkSeries(t, reg, "postern_controller_table_builds_total", `{result="ok"} 0`, `{result="problems"} 0`)
	checkSeries(t, reg, "postern_controller_problems")

	bad, _ := loadGoldenCase(t, "service-missing")
	manifestProblem := Problem{Kind: "File", Name: "broken.yaml", Reason: ReasonInvalidManifest, Message: "line 3: not YAML"}
	before := time.Now()
	if got := a.Apply(bad, []Problem{manifestProblem}); len(got) != 2 {
		t.Fatalf("Apply(service-missing) = %v, want 2 problems", got)
	}
	if swapped == nil {
		t.Fatal("no table swapped in")
	}
	checkSeries(t, reg, "postern_controller_table_builds_total", `{result="ok"} 0`, `{result="problems"} 1`)
	checkSeries(t, reg, "postern_controller_problems",
		`{kind="File",reason="InvalidManifest"} 1`, `{kind="Ingress",reason="ServiceNotFound"} 1`)
	checkSeries(t, reg, "postern_controller_objects",
		`{kind="BackendTLSPolicy"} 0`, `{kind="ConfigMap"} 0`, `{kind="EndpointSlice"} 1`, `{kind="GRPCRoute"} 0`, `{kind="Gateway"} 0`, `{kind="GatewayClass"} 0`, `{kind="HTTPRoute"} 0`,
		`{kind="Ingress"} 1`, `{kind="IngressClass"} 0`, `{kind="ReferenceGrant"} 0`, `{kind="Secret"} 0`, `{kind="Service"} 1`)
	checkSeries(t, reg, "postern_controller_build_duration_seconds", `{} 1`)
	last := testutil.ToFloat64(m.lastTable)
	if after := time.Now(); last < float64(before.UnixNano())/1e9 || last > float64(after.UnixNano())/1e9 {
		t.Errorf("last_table_timestamp_seconds = %f, want between %d and %d", last, before.Unix(), after.Unix())
	}

	// The Service appears: the problem is resolved and its series goes.
	good, _ := loadGoldenCase(t, "service-missing")
	good.Services = append(good.Services, bad.Services[0].DeepCopy())
	good.Services[1].Name = "api"
	if got := a.Apply(good, nil); len(got) != 0 {
		t.Fatalf("Apply(fixed) = %v, want no problems", got)
	}
	checkSeries(t, reg, "postern_controller_table_builds_total", `{result="ok"} 1`, `{result="problems"} 1`)
	checkSeries(t, reg, "postern_controller_problems")
	checkSeries(t, reg, "postern_controller_objects",
		`{kind="BackendTLSPolicy"} 0`, `{kind="ConfigMap"} 0`, `{kind="EndpointSlice"} 1`, `{kind="GRPCRoute"} 0`, `{kind="Gateway"} 0`, `{kind="GatewayClass"} 0`, `{kind="HTTPRoute"} 0`,
		`{kind="Ingress"} 1`, `{kind="IngressClass"} 0`, `{kind="ReferenceGrant"} 0`, `{kind="Secret"} 0`, `{kind="Service"} 2`)
	checkSeries(t, reg, "postern_controller_build_duration_seconds", `{} 2`)

	checkSeries(t, reg, "postern_controller_leader", `{} 0`)
	m.SetLeader(true)
	checkSeries(t, reg, "postern_controller_leader", `{} 1`)
	m.SetLeader(false)
	checkSeries(t, reg, "postern_controller_leader", `{} 0`)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestProblemsGaugeCountsPerKindAndReason checks that the gauge counts
// objects, not label sets, and follows every build.
func TestProblemsGaugeCountsPerKindAndReason(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := func(name, reason string) Problem {
		return Problem{Kind: "Ingress", Namespace: "ns", Name: name, Reason: reason}
	}
	m.built(Snapshot{}, []Problem{p("a", ReasonConflict), p("b", ReasonConflict), p("c", ReasonInvalidHost)}, time.Millisecond, time.Now())
	checkSeries(t, reg, "postern_controller_problems",
		`{kind="Ingress",reason="Conflict"} 2`, `{kind="Ingress",reason="InvalidHost"} 1`)
	m.built(Snapshot{}, []Problem{p("b", ReasonConflict)}, time.Millisecond, time.Now())
	checkSeries(t, reg, "postern_controller_problems", `{kind="Ingress",reason="Conflict"} 1`)

	var nilMetrics *Metrics // a nil *Metrics records nothing and does not panic
	nilMetrics.built(Snapshot{}, nil, 0, time.Now())
	nilMetrics.SetLeader(true)
}

func TestElectorReportsLeadership(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e, err := NewElector(fake.NewClientset(), "postern", "postern-leader", "replica-1", nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	e.SetMetrics(m)
	checkSeries(t, reg, "postern_controller_leader", `{} 0`)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.leader) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("leader gauge never became 1")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !e.Leading() {
		t.Error("gauge says leader, Leading() says not")
	}
	cancel()
	<-done
	checkSeries(t, reg, "postern_controller_leader", `{} 0`)
}
