package main

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

	"github.com/postern-dev/postern/controller"
)

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

// ownNamespace is where the leader-election Lease lives.
func ownNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
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

// acmeCacheWait bounds how long the start waits for the ACME cache before
// serving without it.
const acmeCacheWait = 15 * time.Second

// cluster is what cluster mode shares with the rest of serve: the client,
// Postern's own namespace and the leader election (the leader posts Events,
// writes Ingress status and orders ACME certificates).
type cluster struct {
	rc      *rest.Config
	client  kubernetes.Interface
	ns      string
	src     *controller.ClusterSource
	elector *controller.Elector
	// acmeCache, when ACME is on, is started before the first table so that
	// a restart finds the certificates it already has.
	acmeCache *controller.SecretCache
}

// newCluster connects to the cluster; nothing runs until run.
func newCluster(cfg *config, logger *zap.Logger) (*cluster, error) {
	// client-go logs through klog; send it to our logger so a reflector's
	// "forbidden" or "connection refused" appears as a structured line.
	klog.SetLogger(zapr.NewLogger(logger.Named("client-go")))
	rc, err := restConfig(cfg.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "postern/" + version
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	defaultNS, _, _ := strings.Cut(cfg.defaultCert, "/")
	src, err := controller.NewClusterSource(client, controller.ClusterOptions{
		Namespaces:      cfg.watchNamespaces,
		SecretNamespace: defaultNS,
	}, logger.Named("cluster"))
	if err != nil {
		return nil, err
	}
	ns := ownNamespace(cfg.namespace)
	elector, err := controller.NewElector(client, ns, cfg.electionID, identity(), src.Resync, logger.Named("leader"))
	if err != nil {
		return nil, err
	}
	return &cluster{rc: rc, client: client, ns: ns, src: src, elector: elector}, nil
}

// run watches the cluster and applies every snapshot, calling applied
// after each; only the elected leader posts Events and writes Ingress
// status.
func (c *cluster) run(ctx context.Context, cfg *config, applier *controller.Applier, applied func(), logger *zap.Logger) error {
	broadcaster, recorder := controller.NewEventBroadcaster(c.client, cfg.controllerClass)
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("start event recording: %w", err)
	}
	defer broadcaster.Shutdown()
	reporter := controller.NewEventReporter(recorder, c.elector.Leading)
	status := controller.NewStatusWriter(c.client, controller.StatusOptions{
		PublishService:   cfg.publishService,
		PublishAddresses: cfg.publishAddrs,
	}, controller.Options{IngressClass: cfg.ingressClass, ControllerClass: cfg.controllerClass}, c.elector.Leading, logger.Named("status"))

	if c.acmeCache != nil && !c.acmeCache.Start(ctx, acmeCacheWait) {
		// Serving must not wait on ACME: most likely the RBAC rule for the
		// cache Secrets is missing. ACME certificates wait until the cache
		// can be listed; everything else is served now.
		logger.Error("the ACME cache Secrets cannot be listed yet; ACME certificates are neither served nor ordered until they can (does Postern's role allow get/list/watch/create/update on Secrets in its namespace?)",
			zap.String("namespace", c.ns), zap.Duration("waited", acmeCacheWait))
	}
	go c.elector.Run(ctx)
	go status.Run(ctx)
	logger.Info("watching cluster", zap.String("host", c.rc.Host), zap.Strings("namespaces", cfg.watchNamespaces),
		zap.String("election_namespace", c.ns), zap.String("election_id", cfg.electionID))
	return c.src.Run(ctx, func(s controller.Snapshot, sourceProblems []controller.Problem) {
		problems := applier.Apply(s, sourceProblems)
		applied()
		reporter.Sync(s, problems)
		status.Update(s)
	})
}
