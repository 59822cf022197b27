package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease timings. Every replica serves traffic whatever happens here; only
// status writes and Events wait for a leader, so a failover of up to
// LeaseDuration costs nothing but a late status update.
const (
	LeaseDuration = 15 * time.Second
	RenewDeadline = 10 * time.Second
	RetryPeriod   = 2 * time.Second
)

// Elector takes part in leader election on a coordination.k8s.io Lease.
type Elector struct {
	elector *leaderelection.LeaderElector
	leading atomic.Bool
	logger  *zap.Logger
	onStart func()
	metrics *Metrics // nil: none
}

// SetMetrics makes the Elector report leadership in m
// (postern_controller_leader). Call it before Run.
func (e *Elector) SetMetrics(m *Metrics) {
	e.metrics = m
	m.SetLeader(e.leading.Load())
}

// NewElector prepares an election on the Lease namespace/name with this
// replica's identity. onStart (may be nil) is called each time this replica
// becomes the leader.
func NewElector(client kubernetes.Interface, namespace, name, identity string, onStart func(), logger *zap.Logger) (*Elector, error) {
	e := &Elector{logger: logger, onStart: onStart}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, name,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return nil, fmt.Errorf("lease lock %s/%s: %w", namespace, name, err)
	}
	e.elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   LeaseDuration,
		RenewDeadline:   RenewDeadline,
		RetryPeriod:     RetryPeriod,
		ReleaseOnCancel: true,
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				e.leading.Store(true)
				e.metrics.SetLeader(true)
				logger.Info("became leader", zap.String("namespace", namespace), zap.String("name", name), zap.String("identity", identity))
				if e.onStart != nil {
					e.onStart()
				}
			},
			OnStoppedLeading: func() {
				e.metrics.SetLeader(false)
				if e.leading.Swap(false) {
					logger.Info("stopped leading", zap.String("identity", identity))
				}
			},
			OnNewLeader: func(id string) {
				if id != identity {
					logger.Info("leader is another replica", zap.String("leader", id))
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return e, nil
}

// Run campaigns until ctx is done, and campaigns again after losing the
// lease (an API server outage longer than RenewDeadline, say).
func (e *Elector) Run(ctx context.Context) {
	for ctx.Err() == nil {
		e.elector.Run(ctx)
		e.leading.Store(false)
		e.metrics.SetLeader(false)
		select {
		case <-ctx.Done():
		case <-time.After(RetryPeriod):
		}
	}
}

// Leading reports whether this replica holds the lease now.
func (e *Elector) Leading() bool { return e != nil && e.leading.Load() }
