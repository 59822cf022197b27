package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// ConnectOptions configure cluster mode: which cluster Connect reaches, and
// what Run does there.
type ConnectOptions struct {
	// Kubeconfig is the kubeconfig file of the cluster (--kubeconfig).
	// Empty means the in-cluster config, else $KUBECONFIG (or
	// ~/.kube/config).
	Kubeconfig string
	// UserAgent is sent with every API request; empty means client-go's.
	UserAgent string
	// Watch says which namespaces the ClusterSource watches.
	Watch ClusterOptions
	// Namespace is Postern's own namespace, where the leader-election Lease
	// and the ACME cache Secrets live (--namespace). Empty means
	// $POD_NAMESPACE, else the service account's namespace, else "default".
	Namespace string
	// ElectionID is the name of the leader-election Lease (--election-id).
	ElectionID string
	// IngressClass and ControllerClass decide which Ingresses are ours when
	// status is written (as in Options); ControllerClass also reports the
	// Events.
	IngressClass    string
	ControllerClass string
	// Status says where the address written into Ingress status comes
	// from; its zero value writes none.
	Status StatusOptions
	// GatewayAPI makes cluster mode watch the Gateway API kinds when
	// their CRDs are installed, and write their status
	// (--watch-gateway-api); GatewayControllerName is the controllerName
	// of the GatewayClasses Postern serves (as in Options).
	GatewayAPI            bool
	GatewayControllerName string
}

// Cluster is cluster mode: the API client, Postern's own namespace, the
// ClusterSource and the leader election (the leader posts Events, writes
// Ingress and Gateway API status and orders ACME certificates).
type Cluster struct {
	opts    ConnectOptions
	host    string
	client  kubernetes.Interface
	gateway gatewayclient.Interface // nil: the Gateway API is not watched
	ns      string
	src     *ClusterSource
	elector *Elector
	logger  *zap.Logger
	// acmeCache, when ACME is on, is started before the first table so that
	// a restart finds the certificates it already has.
	acmeCache *SecretCache
}

// acmeCacheWait bounds how long Run waits for the ACME cache before
// serving without it.
const acmeCacheWait = 15 * time.Second

// Connect finds the cluster and prepares cluster mode on it; nothing is
// sent to the API server until Run. It also routes client-go's klog output
// into logger (a process-wide setting).
func Connect(opts ConnectOptions, logger *zap.Logger) (*Cluster, error) {
	// client-go logs through klog; send it to our logger so a reflector's
	// "forbidden" or "connection refused" appears as a structured line.
	klog.SetLogger(zapr.NewLogger(logger.Named("client-go")))
	rc, err := restConfig(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = opts.UserAgent
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	src, err := NewClusterSource(client, opts.Watch, logger.Named("cluster"))
	if err != nil {
		return nil, err
	}
	var gateway gatewayclient.Interface
	if opts.GatewayAPI {
		if gateway, err = gatewayclient.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("gateway API client: %w", err)
		}
		src.WatchGatewayAPI(gateway)
	}
	ns := ownNamespace(opts.Namespace)
	elector, err := NewElector(client, ns, opts.ElectionID, identity(), src.Resync, logger.Named("leader"))
	if err != nil {
		return nil, err
	}
	return &Cluster{opts: opts, host: rc.Host, client: client, gateway: gateway, ns: ns, src: src, elector: elector, logger: logger}, nil
}

// restConfig finds the cluster: --kubeconfig, else in-cluster, else
// $KUBECONFIG (or ~/.kube/config).
func restConfig(path string) (*rest.Config, error) {
	if path != "" {
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	c, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to watch (not in a cluster, no --kubeconfig, no usable $KUBECONFIG; for standalone mode pass --manifests DIR): %w", err)
	}
	return c, nil
}

// serviceAccountNamespace is the file a Pod's service account names its
// namespace in.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ownNamespace is where the leader-election Lease lives.
func ownNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// identity names this replica in the Lease: the pod name when known, made
// unique so that a restarted pod never inherits its predecessor's lease.
func identity() string {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return name + "_" + hex.EncodeToString(b)
}

// ACMECache returns the autocert cache of cluster mode: Secrets in
// Postern's own namespace, shared by every replica. It is made on the first
// call, and Run starts it before the first snapshot. Until it has listed
// its Secrets its Get answers ErrCacheNotSynced, not a miss, so nothing is
// ordered for a certificate it may hold.
func (c *Cluster) ACMECache() *SecretCache {
	if c.acmeCache == nil {
		c.acmeCache = NewSecretCache(c.client, c.ns, c.logger.Named("acme-cache"))
	}
	return c.acmeCache
}

// Leading reports whether this replica holds the leader-election Lease now.
func (c *Cluster) Leading() bool { return c.elector.Leading() }

// SetMetrics makes the election report leadership in m
// (postern_controller_leader). Call it before Run.
func (c *Cluster) SetMetrics(m *Metrics) { c.elector.SetMetrics(m) }

// Run watches the cluster and hands every snapshot to applier, calling
// applied after each, until ctx is done; only the elected leader posts
// Events and writes Ingress status.
func (c *Cluster) Run(ctx context.Context, applier *Applier, applied func()) error {
	broadcaster, recorder := NewEventBroadcaster(c.client, c.opts.ControllerClass)
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("start event recording: %w", err)
	}
	defer broadcaster.Shutdown()
	reporter := NewEventReporter(recorder, c.elector.Leading)
	status := NewStatusWriter(c.client, c.opts.Status,
		Options{IngressClass: c.opts.IngressClass, ControllerClass: c.opts.ControllerClass},
		c.elector.Leading, c.logger.Named("status"))
	if c.gateway != nil {
		status.WriteGatewayAPI(c.gateway, c.opts.GatewayControllerName)
	}

	if c.acmeCache != nil && !c.acmeCache.Start(ctx, acmeCacheWait) {
		// Serving must not wait on ACME: most likely the RBAC rule for the
		// cache Secrets is missing. ACME certificates wait until the cache
		// can be listed; everything else is served now.
		c.logger.Error("the ACME cache Secrets cannot be listed yet; ACME certificates are neither served nor ordered until they can (does Postern's role allow get/list/watch/create/update on Secrets in its namespace?)",
			zap.String("namespace", c.ns), zap.Duration("waited", acmeCacheWait))
	}
	go c.elector.Run(ctx)
	go status.Run(ctx)
	go c.resyncStatus(ctx)
	c.logger.Info("watching cluster", zap.String("host", c.host), zap.Strings("namespaces", c.opts.Watch.Namespaces),
		zap.String("election_namespace", c.ns), zap.String("election_id", c.opts.ElectionID))
	return c.src.Run(ctx, func(s Snapshot, sourceProblems []Problem) {
		problems := applier.Apply(s, sourceProblems)
		applied()
		reporter.Sync(s, problems)
		status.Update(s, applier.GatewayStatus())
	})
}

// statusResyncEvery is how often the leader takes a snapshot with nothing
// changed, so that the status writer sees a status someone else
// overwrote: the informers do not wake the source for status-only
// changes (statusOnly), since those are mostly the writer's own.
const statusResyncEvery = time.Minute

// resyncStatus asks for a snapshot every statusResyncEvery while leading,
// until ctx is done. With nothing changed it costs an incremental apply
// that patches nothing, and a comparison per object.
func (c *Cluster) resyncStatus(ctx context.Context) {
	tick := time.NewTicker(statusResyncEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if c.elector.Leading() {
				c.src.Resync()
			}
		}
	}
}
