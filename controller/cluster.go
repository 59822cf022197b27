package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// DefaultHoldOff is how long the cluster source waits after the first
// change of a burst before it rebuilds: long enough to batch the dozens of
// updates a rollout makes, short enough that one change applies in tens of
// milliseconds.
const DefaultHoldOff = 20 * time.Millisecond

// ClusterOptions configure a ClusterSource.
type ClusterOptions struct {
	// Namespaces to watch; empty means every namespace.
	Namespaces []string
	// SecretNamespace, when Namespaces does not include it, is one more
	// namespace whose TLS Secrets are watched (that of
	// --default-ssl-certificate). Empty means none.
	SecretNamespace string
	// HoldOff batches bursts of changes; zero means DefaultHoldOff.
	HoldOff time.Duration
	// GatewayDiscoveryEvery is how often the source looks for the
	// Gateway API CRDs while they are not installed (when it watches the
	// Gateway API at all: WatchGatewayAPI); zero means
	// DefaultGatewayDiscoveryEvery.
	GatewayDiscoveryEvery time.Duration
}

// ClusterSource watches a Kubernetes API server with shared informers and
// produces a Snapshot after every batch of changes. Informer handlers only
// enqueue one constant key; the work queue deduplicates, and the hold-off
// batches bursts, so a thousand updates cost one or two rebuilds.
type ClusterSource struct {
	client kubernetes.Interface
	opts   ClusterOptions
	logger *zap.Logger

	factories      []informers.SharedInformerFactory
	ingresses      []cache.GenericLister
	services       []cache.GenericLister
	endpointSlices []cache.GenericLister
	secrets        []cache.GenericLister
	configMaps     []cache.GenericLister
	classes        cache.GenericLister
	synced         []cache.InformerSynced
	queue          workqueue.TypedRateLimitingInterface[string]

	// gatewayClient, when set, is how the Gateway API kinds are watched;
	// gateway holds their informers once they are synced.
	gatewayClient gatewayclient.Interface
	gateway       atomic.Pointer[gatewayWatch]
}

// snapshotKey is the one key the work queue ever holds: every change means
// "take a new snapshot".
const snapshotKey = "snapshot"

// NewClusterSource prepares informers for Ingresses, IngressClasses,
// Services, EndpointSlices, TLS and Opaque Secrets and ConfigMaps. Nothing is started until Run.
func NewClusterSource(client kubernetes.Interface, opts ClusterOptions, logger *zap.Logger) (*ClusterSource, error) {
	if opts.HoldOff <= 0 {
		opts.HoldOff = DefaultHoldOff
	}
	if opts.GatewayDiscoveryEvery <= 0 {
		opts.GatewayDiscoveryEvery = DefaultGatewayDiscoveryEvery
	}
	s := &ClusterSource{
		client: client,
		opts:   opts,
		logger: logger,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "postern"}),
	}
	namespaces := opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	strip := informers.WithTransform(stripForCache)
	// A cluster full of other Secrets (service-account tokens, Helm
	// releases) costs nothing: only TLS Secrets and Opaque ones (basic
	// auth users, client certificate authorities: what `kubectl create
	// secret generic` makes) are listed and watched, by two informers.
	ofType := func(t corev1.SecretType) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(t)).String()
		})
	}
	tlsOnly, opaqueOnly := ofType(corev1.SecretTypeTLS), ofType(corev1.SecretTypeOpaque)
	if ns := opts.SecretNamespace; ns != "" && len(opts.Namespaces) > 0 && !slices.Contains(opts.Namespaces, ns) {
		sf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), tlsOnly, strip)
		s.factories = append(s.factories, sf)
		gi := mustGeneric(sf.ForResource(corev1.SchemeGroupVersion.WithResource("secrets")))
		if err := s.watch(gi.Informer()); err != nil {
			return nil, err
		}
		s.secrets = append(s.secrets, gi.Lister())
	}
	secretsOf := func(f informers.SharedInformerFactory) informers.GenericInformer {
		return mustGeneric(f.ForResource(corev1.SchemeGroupVersion.WithResource("secrets")))
	}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), strip)
		sf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), tlsOnly, strip)
		of := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns), opaqueOnly, strip)
		s.factories = append(s.factories, f, sf, of)

		for _, inf := range []struct {
			gi   informers.GenericInformer
			into *[]cache.GenericLister
		}{
			{mustGeneric(f.ForResource(networkingv1.SchemeGroupVersion.WithResource("ingresses"))), &s.ingresses},
			{mustGeneric(f.ForResource(corev1.SchemeGroupVersion.WithResource("services"))), &s.services},
			{mustGeneric(f.ForResource(discoveryv1.SchemeGroupVersion.WithResource("endpointslices"))), &s.endpointSlices},
			{secretsOf(sf), &s.secrets},
			{secretsOf(of), &s.secrets},
			{mustGeneric(f.ForResource(corev1.SchemeGroupVersion.WithResource("configmaps"))), &s.configMaps},
		} {
			if err := s.watch(inf.gi.Informer()); err != nil {
				return nil, err
			}
			*inf.into = append(*inf.into, inf.gi.Lister())
		}
	}
	cf := informers.NewSharedInformerFactoryWithOptions(client, 0, strip)
	s.factories = append(s.factories, cf)
	classes := cf.Networking().V1().IngressClasses()
	if err := s.watch(classes.Informer()); err != nil {
		return nil, err
	}
	s.classes = mustGeneric(cf.ForResource(networkingv1.SchemeGroupVersion.WithResource("ingressclasses"))).Lister()
	return s, nil
}

func mustGeneric(gi informers.GenericInformer, err error) informers.GenericInformer {
	if err != nil {
		// The resources above are all built into client-go; this cannot
		// fail at run time.
		panic(fmt.Sprintf("generic informer: %v", err))
	}
	return gi
}

// watch registers the handlers that enqueue the snapshot key, and the
// informer among those the first snapshot waits for.
func (s *ClusterSource) watch(inf cache.SharedIndexInformer) error {
	synced, err := s.handle(inf)
	if err != nil {
		return err
	}
	s.synced = append(s.synced, synced)
	return nil
}

// handle registers the handlers that enqueue the snapshot key.
func (s *ClusterSource) handle(inf cache.SharedIndexInformer) (cache.InformerSynced, error) {
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.queue.AddAfter(snapshotKey, s.opts.HoldOff) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := newObj.(metav1.Object)
			if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync, not a change
			}
			if ok1 && ok2 && statusOnly(oldObj, o, n) {
				// Most likely the status writer's own write: nothing
				// Build reads changed. (The status is checked again on
				// the next snapshot, at the latest statusResyncEvery.)
				return
			}
			s.queue.AddAfter(snapshotKey, s.opts.HoldOff)
		},
		DeleteFunc: func(any) { s.queue.AddAfter(snapshotKey, s.opts.HoldOff) },
	})
	if err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	return reg.HasSynced, nil
}

// statusOnly reports whether the update from o to n changed nothing Build
// reads: for the kinds whose spec changes bump metadata.generation
// (Ingresses and the Gateway API kinds with a status subresource), the
// same generation, labels and annotations mean a change of status only.
func statusOnly(obj any, o, n metav1.Object) bool {
	switch obj.(type) {
	case *networkingv1.Ingress, *gatewayv1.GatewayClass, *gatewayv1.Gateway, *gatewayv1.HTTPRoute, *gatewayv1.GRPCRoute, *gatewayv1.BackendTLSPolicy:
	default:
		return false
	}
	return o.GetGeneration() != 0 && o.GetGeneration() == n.GetGeneration() &&
		o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) &&
		maps.Equal(o.GetLabels(), n.GetLabels()) && maps.Equal(o.GetAnnotations(), n.GetAnnotations())
}

// Run starts the informers, waits for their caches, delivers a first
// snapshot, then one after every batch of changes, until ctx is done. If
// the API server goes away, informers retry by themselves and the last
// table keeps serving.
func (s *ClusterSource) Run(ctx context.Context, onChange func(Snapshot, []Problem)) error {
	defer s.queue.ShutDown()
	gw, err := s.gatewayAtStart(ctx)
	if err != nil {
		return err
	}
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range s.factories {
			f.Shutdown()
		}
	}()
	synced := s.synced
	if gw != nil {
		gw.start(ctx.Done())
		defer gw.shutdown()
		synced = append(slices.Clip(synced), gw.synced...)
	}
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("informer caches did not sync")
	}
	s.logger.Info("caches synced", zap.Duration("duration", time.Since(start)), zap.Bool("gateway_api", gw != nil))
	if gw != nil {
		s.gateway.Store(gw)
	}
	// The initial list filled the queue; start from one clean snapshot.
	s.queue.Add(snapshotKey)
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for {
		key, shutdown := s.queue.Get()
		if shutdown {
			return nil
		}
		snap, err := s.Snapshot()
		if err != nil {
			s.logger.Error("take snapshot", zap.Error(err))
			s.queue.Done(key)
			s.queue.AddRateLimited(key)
			continue
		}
		s.queue.Forget(key)
		onChange(snap, nil)
		s.queue.Done(key)
	}
}

// Snapshot reads every watched object from the informers' caches. The
// objects are shared with the caches: Build only reads them.
func (s *ClusterSource) Snapshot() (Snapshot, error) {
	var snap Snapshot
	var err error
	if snap.Ingresses, err = listAll[*networkingv1.Ingress](s.ingresses); err != nil {
		return Snapshot{}, err
	}
	if snap.Services, err = listAll[*corev1.Service](s.services); err != nil {
		return Snapshot{}, err
	}
	if snap.EndpointSlices, err = listAll[*discoveryv1.EndpointSlice](s.endpointSlices); err != nil {
		return Snapshot{}, err
	}
	if snap.Secrets, err = listAll[*corev1.Secret](s.secrets); err != nil {
		return Snapshot{}, err
	}
	snap.Secrets = onePerName(snap.Secrets)
	if snap.ConfigMaps, err = listAll[*corev1.ConfigMap](s.configMaps); err != nil {
		return Snapshot{}, err
	}
	if snap.IngressClasses, err = listAll[*networkingv1.IngressClass]([]cache.GenericLister{s.classes}); err != nil {
		return Snapshot{}, err
	}
	if gw := s.gateway.Load(); gw != nil {
		if err := gw.snapshot(&snap); err != nil {
			return Snapshot{}, err
		}
	}
	return snap, nil
}

// onePerName drops the Secrets two informers both hold (each is of one
// type, which the API server selects; a test's fake clientset does not).
func onePerName(secrets []*corev1.Secret) []*corev1.Secret {
	seen := make(map[types.NamespacedName]bool, len(secrets))
	out := secrets[:0]
	for _, sec := range secrets {
		k := types.NamespacedName{Namespace: sec.Namespace, Name: sec.Name}
		if !seen[k] {
			seen[k] = true
			out = append(out, sec)
		}
	}
	return out
}

func listAll[T any](listers []cache.GenericLister) ([]T, error) {
	var out []T
	for _, l := range listers {
		objs, err := l.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		for _, o := range objs {
			if t, ok := o.(T); ok {
				out = append(out, t)
			}
		}
	}
	return slices.Clip(out), nil
}

// stripForCache drops what Build never reads from cached objects: managed
// fields and kubectl's copy of the last applied object, often most of an
// object's size.
func stripForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				c := make(map[string]string, len(a)-1)
				for k, v := range a {
					if k != corev1.LastAppliedConfigAnnotation {
						c[k] = v
					}
				}
				m.SetAnnotations(c)
			}
		}
	}
	return obj, nil
}

// Resync asks for a new snapshot even though nothing changed, for example
// when this replica becomes the leader and must write status.
func (s *ClusterSource) Resync() { s.queue.Add(snapshotKey) }
