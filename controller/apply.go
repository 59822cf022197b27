package controller

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/route"
)

// Applier is the impure half of the flow: it runs Build on each snapshot,
// hands the table to the proxy and reports problems. A problem is reported
// when it first appears and again when it is resolved, not on every build,
// so a broken object costs one log line, not one per change elsewhere.
type Applier struct {
	opts   Options
	swap   func(*route.Table)
	logger *zap.Logger

	mu      sync.Mutex
	known   map[Problem]bool // problems reported and not yet resolved
	last    *lastBuild       // the last table and what it was built from
	ready   atomic.Bool
	metrics *Metrics // nil: none
}

// SetMetrics makes the Applier record every build in m. Call it before the
// first Apply.
func (a *Applier) SetMetrics(m *Metrics) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.metrics = m
}

// NewApplier returns an Applier that builds with opts and passes every
// table to swap (the proxy's Handler.Swap).
func NewApplier(opts Options, swap func(*route.Table), logger *zap.Logger) *Applier {
	if opts.Certificates == nil {
		opts.Certificates = NewCertificateCache()
	}
	return &Applier{opts: opts, swap: swap, logger: logger, known: make(map[Problem]bool)}
}

// Apply builds a table from s, swaps it in and reports the problems of the
// build together with sourceProblems (those the source found while reading
// objects, such as a manifest that does not parse). It returns every current
// problem, sorted.
//
// When s differs from the last snapshot in EndpointSlices only, the table
// is not built again: PatchEndpoints updates the endpoints of the Services
// concerned in the last table, which gives the same table in a fraction of
// the time (a full build is still made at least every fullBuildEvery).
func (a *Applier) Apply(s Snapshot, sourceProblems []Problem) []Problem {
	a.mu.Lock()
	defer a.mu.Unlock()

	start := time.Now()
	var table *route.Table
	var problems []Problem
	changed, incremental := a.last.endpointChanges(s, start)
	if incremental {
		table = PatchEndpoints(a.last.table, s, changed)
		problems = a.last.problems
		a.last.table = table
	} else {
		opts := a.opts
		opts.Now = start
		var gateway *GatewayAPIStatus
		table, problems, gateway = build(s, opts)
		a.last = remember(s, table, problems, start)
		a.last.gateway = gateway
	}
	built := time.Since(start)
	a.swap(table)
	a.ready.Store(true)

	problems = append(slices.Clone(sourceProblems), problems...)
	slices.SortFunc(problems, compareProblems)
	problems = slices.Compact(problems)
	a.metrics.built(s, problems, built, time.Now())

	current := make(map[Problem]bool, len(problems))
	for _, p := range problems {
		current[p] = true
		if !a.known[p] {
			a.logger.Warn("cannot serve object as written",
				zap.String("kind", p.Kind), zap.String("namespace", p.Namespace), zap.String("name", p.Name),
				zap.String("reason", p.Reason), zap.String("message", p.Message))
		}
	}
	for p := range a.known {
		if !current[p] {
			a.logger.Info("problem resolved",
				zap.String("kind", p.Kind), zap.String("namespace", p.Namespace), zap.String("name", p.Name),
				zap.String("reason", p.Reason))
		}
	}
	a.known = current

	if !incremental {
		// A patch changes none of these counts.
		a.last.routes, a.last.backends = 0, len(table.Backends())
		for _, vh := range table.VirtualHosts {
			a.last.routes += len(vh.Routes)
		}
	}
	a.logger.Info("routing table applied",
		zap.Int("hosts", len(table.VirtualHosts)), zap.Int("routes", a.last.routes),
		zap.Int("backends", a.last.backends), zap.Int("problems", len(problems)),
		zap.Bool("incremental", incremental), zap.Int("services_changed", len(changed)),
		zap.Duration("build_duration", built))
	return problems
}

// GatewayStatus returns what the last full build found about the Gateway
// API objects, the status to write (a patch changes none of it); nil
// before the first Apply.
func (a *Applier) GatewayStatus() *GatewayAPIStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		return nil
	}
	return a.last.gateway
}

// Ready reports whether a first table has been applied.
func (a *Applier) Ready() bool { return a.ready.Load() }

func compareProblems(x, y Problem) int {
	for _, c := range [...][2]string{{x.Kind, y.Kind}, {x.Namespace, y.Namespace}, {x.Name, y.Name}, {x.Reason, y.Reason}, {x.Message, y.Message}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}
