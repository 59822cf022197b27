package controller

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// The Gateway API kinds are custom resources: a cluster may not have their
// CRDs. At start the ClusterSource asks discovery whether
// gateway.networking.k8s.io/v1 serves them; if it does, their informers
// are part of the first sync (a new replica never serves a table without
// the Gateway routes). If it does not, the source says so once and asks
// again every DefaultGatewayDiscoveryEvery, and starts the informers when
// the CRDs appear.

// DefaultGatewayDiscoveryEvery is how often the ClusterSource looks for
// the Gateway API CRDs while they are not installed.
const DefaultGatewayDiscoveryEvery = 10 * time.Second

// gatewaySyncPatience is how long the Gateway API informers started after
// the first sync may take before the source says they are stuck.
const gatewaySyncPatience = 30 * time.Second

// The resources of gateway.networking.k8s.io/v1 Postern watches; the
// first three must be served, ReferenceGrants, GRPCRoutes and
// BackendTLSPolicies are watched when they are.
const (
	gatewayClassesResource  = "gatewayclasses"
	gatewaysResource        = "gateways"
	httpRoutesResource      = "httproutes"
	grpcRoutesResource      = "grpcroutes"
	backendTLSResource      = "backendtlspolicies"
	referenceGrantsResource = "referencegrants"
)

// gatewayOptional are the Gateway API resources watched only when served.
type gatewayOptional struct {
	grants, grpcRoutes, backendTLS bool
}

// gatewayWatch is the part of a ClusterSource that watches the Gateway
// API kinds and the Namespaces (whose labels listeners select routes
// by). It is made whole, synced, then published to Snapshot at once.
type gatewayWatch struct {
	factories  []gatewayinformers.SharedInformerFactory
	core       informers.SharedInformerFactory
	classes    []cache.GenericLister
	gateways   []cache.GenericLister
	httpRoutes []cache.GenericLister
	grpcRoutes []cache.GenericLister
	backendTLS []cache.GenericLister
	grants     []cache.GenericLister
	namespaces []cache.GenericLister
	synced     []cache.InformerSynced
}

// WatchGatewayAPI makes the source watch the Gateway API kinds through gc
// when their CRDs are installed. Call it before Run.
func (s *ClusterSource) WatchGatewayAPI(gc gatewayclient.Interface) { s.gatewayClient = gc }

// gatewayServed asks discovery which of the Gateway API resources Postern
// watches are served. ok is false when the three it needs are not all
// there; missing names them.
func (s *ClusterSource) gatewayServed(ctx context.Context) (ok bool, opt gatewayOptional, missing []string, err error) {
	d := discovery.ToDiscoveryInterfaceWithContext(s.client.Discovery())
	list, err := d.ServerResourcesForGroupVersionWithContext(ctx, gatewayv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, opt, []string{gatewayClassesResource, gatewaysResource, httpRoutesResource}, nil
	}
	if err != nil {
		return false, opt, nil, fmt.Errorf("discover %s: %w", gatewayv1.GroupVersion, err)
	}
	served := make(map[string]bool, len(list.APIResources))
	for _, r := range list.APIResources {
		served[r.Name] = true
	}
	for _, r := range []string{gatewayClassesResource, gatewaysResource, httpRoutesResource} {
		if !served[r] {
			missing = append(missing, r)
		}
	}
	opt = gatewayOptional{grants: served[referenceGrantsResource], grpcRoutes: served[grpcRoutesResource], backendTLS: served[backendTLSResource]}
	return len(missing) == 0, opt, missing, nil
}

// newGatewayWatch prepares the Gateway API informers, their event handlers
// enqueueing snapshots as every other informer's do.
func (s *ClusterSource) newGatewayWatch(opt gatewayOptional) (*gatewayWatch, error) {
	w := &gatewayWatch{}
	namespaces := s.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	add := func(gi gatewayinformers.GenericInformer, err error, into *[]cache.GenericLister) error {
		if err != nil {
			return fmt.Errorf("gateway informer: %w", err)
		}
		synced, err := s.handle(gi.Informer())
		if err != nil {
			return err
		}
		w.synced = append(w.synced, synced)
		*into = append(*into, gi.Lister())
		return nil
	}
	strip := gatewayinformers.WithTransform(stripForCache)
	of := schema.GroupVersion(gatewayv1.GroupVersion).WithResource
	for _, ns := range namespaces {
		f := gatewayinformers.NewSharedInformerFactoryWithOptions(s.gatewayClient, 0, gatewayinformers.WithNamespace(ns), strip)
		w.factories = append(w.factories, f)
		gi, err := f.ForResource(of(gatewaysResource))
		if err := add(gi, err, &w.gateways); err != nil {
			return nil, err
		}
		gi, err = f.ForResource(of(httpRoutesResource))
		if err := add(gi, err, &w.httpRoutes); err != nil {
			return nil, err
		}
		if opt.grants {
			gi, err = f.ForResource(of(referenceGrantsResource))
			if err := add(gi, err, &w.grants); err != nil {
				return nil, err
			}
		}
		if opt.grpcRoutes {
			gi, err = f.ForResource(of(grpcRoutesResource))
			if err := add(gi, err, &w.grpcRoutes); err != nil {
				return nil, err
			}
		}
		if opt.backendTLS {
			gi, err = f.ForResource(of(backendTLSResource))
			if err := add(gi, err, &w.backendTLS); err != nil {
				return nil, err
			}
		}
	}
	cf := gatewayinformers.NewSharedInformerFactoryWithOptions(s.gatewayClient, 0, strip)
	w.factories = append(w.factories, cf)
	gi, err := cf.ForResource(of(gatewayClassesResource))
	if err := add(gi, err, &w.classes); err != nil {
		return nil, err
	}
	// Namespaces are cluster-scoped: their labels are what a listener's
	// allowedRoutes selector matches, whichever namespaces are watched.
	w.core = informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTransform(stripForCache))
	ns := mustGeneric(w.core.ForResource(corev1.SchemeGroupVersion.WithResource("namespaces")))
	synced, err := s.handle(ns.Informer())
	if err != nil {
		return nil, err
	}
	w.synced = append(w.synced, synced)
	w.namespaces = append(w.namespaces, ns.Lister())
	return w, nil
}

// start starts the informers of w.
func (w *gatewayWatch) start(stop <-chan struct{}) {
	for _, f := range w.factories {
		f.Start(stop)
	}
	w.core.Start(stop)
}

// shutdown stops the informers of w and waits for them.
func (w *gatewayWatch) shutdown() {
	for _, f := range w.factories {
		f.Shutdown()
	}
	w.core.Shutdown()
}

// gatewayAtStart decides, before the first sync, whether the Gateway API
// is watched from the start: it returns the informers to sync with the
// others when the CRDs are served. When they are not, it says so and
// looks for them again in the background.
func (s *ClusterSource) gatewayAtStart(ctx context.Context) (*gatewayWatch, error) {
	if s.gatewayClient == nil {
		return nil, nil
	}
	ok, opt, missing, err := s.gatewayServed(ctx)
	if err != nil {
		// Discovery failing is not the CRDs missing: the API server is
		// unreachable or refusing, and the informers will say so too.
		s.logger.Warn("cannot tell whether the Gateway API is installed; looking again later", zap.Error(err))
	}
	if ok {
		return s.newGatewayWatch(opt)
	}
	if err == nil {
		s.logger.Info("the Gateway API CRDs are not installed; Gateways and HTTPRoutes are served once they are",
			zap.String("group_version", gatewayv1.GroupVersion.String()), zap.Strings("missing", missing),
			zap.Duration("looking_every", s.opts.GatewayDiscoveryEvery))
	}
	go s.discoverGateway(ctx, s.opts.GatewayDiscoveryEvery)
	return nil, nil
}

// discoverGateway asks for the Gateway API CRDs every interval until they
// are served, then starts their informers and, once synced, publishes
// them to Snapshot and asks for a new one. It returns when ctx is done.
func (s *ClusterSource) discoverGateway(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ok, opt, _, err := s.gatewayServed(ctx)
		if err != nil {
			s.logger.Debug("cannot discover the Gateway API", zap.Error(err))
			continue
		}
		if !ok {
			continue
		}
		w, err := s.newGatewayWatch(opt)
		if err != nil {
			s.logger.Error("cannot watch the Gateway API", zap.Error(err))
			return
		}
		w.start(ctx.Done())
		defer w.shutdown()
		s.logger.Info("the Gateway API CRDs are installed now; watching them", zap.Bool("reference_grants", opt.grants), zap.Bool("grpc_routes", opt.grpcRoutes), zap.Bool("backend_tls_policies", opt.backendTLS))
		for waited := time.Duration(0); ; waited += gatewaySyncPatience {
			wait, cancel := context.WithTimeout(ctx, gatewaySyncPatience)
			done := cache.WaitForCacheSync(wait.Done(), w.synced...)
			cancel()
			if done {
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.logger.Error("the Gateway API informers have not synced yet; Gateways and HTTPRoutes are not served until they do (does Postern's role allow list and watch on gatewayclasses, gateways, httproutes, grpcroutes, referencegrants, backendtlspolicies and namespaces?)",
				zap.Duration("waited", waited+gatewaySyncPatience))
		}
		s.gateway.Store(w)
		s.queue.Add(snapshotKey)
		<-ctx.Done()
		return
	}
}

// snapshot adds what w holds to snap.
func (w *gatewayWatch) snapshot(snap *Snapshot) error {
	var err error
	if snap.GatewayClasses, err = listAll[*gatewayv1.GatewayClass](w.classes); err != nil {
		return err
	}
	if snap.Gateways, err = listAll[*gatewayv1.Gateway](w.gateways); err != nil {
		return err
	}
	if snap.HTTPRoutes, err = listAll[*gatewayv1.HTTPRoute](w.httpRoutes); err != nil {
		return err
	}
	if snap.GRPCRoutes, err = listAll[*gatewayv1.GRPCRoute](w.grpcRoutes); err != nil {
		return err
	}
	if snap.BackendTLSPolicies, err = listAll[*gatewayv1.BackendTLSPolicy](w.backendTLS); err != nil {
		return err
	}
	if snap.ReferenceGrants, err = listAll[*gatewayv1.ReferenceGrant](w.grants); err != nil {
		return err
	}
	if snap.Namespaces, err = listAll[*corev1.Namespace](w.namespaces); err != nil {
		return err
	}
	return nil
}
