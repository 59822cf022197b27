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
func (a *Applier) Apply(s Snapshot, sourceProblems []Problem) []Problem {
	a.mu.Lock()
	defer a.mu.Unlock()

	start := time.Now()
	opts := a.opts
	opts.Now = start
	table, problems := Build(s, opts)
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

	routes := 0
	for _, vh := range table.VirtualHosts {
		routes += len(vh.Routes)
	}
	a.logger.Info("routing table applied",
		zap.Int("hosts", len(table.VirtualHosts)), zap.Int("routes", routes),
		zap.Int("backends", len(table.Backends())), zap.Int("problems", len(problems)),
		zap.Duration("build_duration", built))
	return problems
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
