package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Build results, the values of postern_controller_table_builds_total's
// result label.
const (
	// BuildOK is a table built without a problem.
	BuildOK = "ok"
	// BuildProblems is a table built and swapped in while some objects
	// could not be served as written.
	BuildProblems = "problems"
)

// Metrics are the controller's Prometheus metrics. Its methods may be
// called on a nil *Metrics, which records nothing.
type Metrics struct {
	builds        *prometheus.CounterVec
	buildDuration prometheus.Histogram
	lastTable     prometheus.Gauge
	objects       *prometheus.GaugeVec
	problems      *prometheus.GaugeVec
	leader        prometheus.Gauge

	mu           sync.Mutex
	problemLabel map[[2]string]bool // the kind and reason labels set now
}

// NewMetrics registers the controller's metrics on reg (cmd/postern passes
// its *prometheus.Registry) and returns them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "postern", Subsystem: "controller", Name: "table_builds_total",
			Help: `Routing tables built and swapped in, by result: "ok", or "problems" when some objects could not be served as written.`,
		}, []string{"result"}),
		buildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "postern", Subsystem: "controller", Name: "build_duration_seconds",
			Help:    "Time to build a routing table from a snapshot of the objects.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		lastTable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "postern", Subsystem: "controller", Name: "last_table_timestamp_seconds",
			Help: "When the routing table being served was swapped in, in seconds since the Unix epoch.",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "postern", Subsystem: "controller", Name: "objects",
			Help: "Objects in the last snapshot the table was built from, by kind (Ingresses of every class).",
		}, []string{"kind"}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "postern", Subsystem: "controller", Name: "problems",
			Help: "Objects that cannot be served as written now, by kind and reason (see the Events and logs for which).",
		}, []string{"kind", "reason"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "postern", Subsystem: "controller", Name: "leader",
			Help: "1 when this replica is the elected leader (writes status and Events), else 0. Standalone mode has no election and reports 1.",
		}),
		problemLabel: make(map[[2]string]bool),
	}
	// Both results exist from the start, so that rate() sees the first
	// problem build.
	m.builds.WithLabelValues(BuildOK)
	m.builds.WithLabelValues(BuildProblems)
	reg.MustRegister(m.builds, m.buildDuration, m.lastTable, m.objects, m.problems, m.leader)
	return m
}

// built records a table built from s in d and swapped in at now, with
// problems, the current problems.
func (m *Metrics) built(s Snapshot, problems []Problem, d time.Duration, now time.Time) {
	if m == nil {
		return
	}
	result := BuildOK
	if len(problems) > 0 {
		result = BuildProblems
	}
	m.builds.WithLabelValues(result).Inc()
	m.buildDuration.Observe(d.Seconds())
	m.lastTable.Set(float64(now.UnixNano()) / 1e9)
	for kind, n := range map[string]int{
		"Ingress":          len(s.Ingresses),
		"IngressClass":     len(s.IngressClasses),
		"Service":          len(s.Services),
		"EndpointSlice":    len(s.EndpointSlices),
		"Secret":           len(s.Secrets),
		"ConfigMap":        len(s.ConfigMaps),
		"GatewayClass":     len(s.GatewayClasses),
		"Gateway":          len(s.Gateways),
		"HTTPRoute":        len(s.HTTPRoutes),
		"GRPCRoute":        len(s.GRPCRoutes),
		"BackendTLSPolicy": len(s.BackendTLSPolicies),
		"ReferenceGrant":   len(s.ReferenceGrants),
	} {
		m.objects.WithLabelValues(kind).Set(float64(n))
	}

	counts := make(map[[2]string]int)
	for _, p := range problems {
		counts[[2]string{p.Kind, p.Reason}]++
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Set the current counts, then delete the label sets resolved since
	// the last build: a scrape never sees the gauge empty in between.
	for l, n := range counts {
		m.problems.WithLabelValues(l[0], l[1]).Set(float64(n))
	}
	for l := range m.problemLabel {
		if counts[l] == 0 {
			m.problems.DeleteLabelValues(l[0], l[1])
			delete(m.problemLabel, l)
		}
	}
	for l := range counts {
		m.problemLabel[l] = true
	}
}

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(leading bool) {
	if m == nil {
		return
	}
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}
