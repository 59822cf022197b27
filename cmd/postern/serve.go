package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
	posterntls "github.com/postern-dev/postern/tls"
)

func newLogger(cfg *config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(cfg.logLevel)
	zc.Encoding = cfg.logFormat
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	logger, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return logger, nil
}

// newRegistry returns the registry /metrics serves, with the Go runtime
// and process collectors and postern_build_info; the components register
// their own metrics on it.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "postern_build_info",
			Help:        "Postern's version and the Go version it was built with; always 1.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	return reg
}

// serve wires the source, the controller and the proxy, and runs until ctx
// is done; then it drains within --shutdown-grace.
func serve(ctx context.Context, cfg *config, logger *zap.Logger) error {
	a := &app{cfg: cfg, logger: logger, reg: newRegistry(), notReady: make(chan struct{})}
	a.proxyMetrics = observe.NewMetrics(a.reg)
	a.controllerMetrics = controller.NewMetrics(a.reg)
	if cfg.accessLog {
		// Deferred first, so it runs last: after the listeners drained,
		// the lines still queued are written.
		defer a.openAccessLog()()
	}
	if err := a.build(ctx); err != nil {
		return err
	}
	if err := a.listen(ctx); err != nil {
		return err
	}
	a.servers()
	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	errc := a.start(ctx, srcCtx)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.drain(runErr, stopSource)
	return runErr
}

// app is one running Postern: what serve builds, in the order it builds,
// starts and drains it.
type app struct {
	cfg    *config
	logger *zap.Logger
	reg    *prometheus.Registry

	proxyMetrics      *observe.Metrics
	controllerMetrics *controller.Metrics
	accessLog         *observe.AccessLog // nil: --access-log=false
	handler           *proxy.Handler
	cl                *controller.Cluster // nil: standalone (--manifests)
	selfSigned        *route.Certificate
	acme              *posterntls.ACME // nil: no ACME
	store             *posterntls.Store
	applier           *controller.Applier
	applied           func() // runs after every table swap

	notReady chan struct{} // closed when draining begins: /readyz fails
	draining sync.Once

	httpLn, httpsLn, adminLn net.Listener
	httpSrv, httpsSrv        *proxy.Server
	adminSrv                 *http.Server
	gateways                 *gatewayListeners // those of Gateways with addresses of their own
}

// openAccessLog starts the access log and returns what closes it, writing
// the lines still queued.
func (a *app) openAccessLog() (closeLog func()) {
	a.accessLog = observe.NewAccessLog(observe.AccessLogOptions{
		Output: os.Stdout, Format: a.cfg.logFormat, Sample: a.cfg.accessLogSample,
		Registerer: a.reg, Logger: a.logger.Named("access-log"),
	})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.accessLog.Close(ctx); err != nil {
			a.logger.Warn("access log lines lost at exit", zap.Error(err))
		}
	}
}

// build makes the proxy, the cluster connection (unless standalone), the
// certificates and ACME, and the controller that feeds the proxy.
func (a *app) build(ctx context.Context) error {
	cfg, logger := a.cfg, a.logger
	a.handler = proxy.New(proxy.Options{
		Logger:                logger.Named("proxy"),
		DialTimeout:           cfg.dialTimeout,
		ResponseHeaderTimeout: cfg.responseTimeout,
		Metrics:               a.proxyMetrics,
		AccessLog:             a.accessLog,
	})
	if cfg.manifests == "" {
		var err error
		if a.cl, err = connect(cfg, logger); err != nil {
			return err
		}
	}
	var err error
	if a.selfSigned, err = posterntls.SelfSigned(time.Now()); err != nil {
		return fmt.Errorf("default certificate: %w", err)
	}
	if a.acme, err = newACME(cfg, a.cl, a.handler.Table, a.reg, logger); err != nil {
		return err
	}
	a.store = posterntls.NewStore(posterntls.StoreOptions{
		Table:    a.handler.Table,
		Default:  a.selfSigned,
		ACME:     a.acme,
		Logger:   logger,
		Registry: a.reg,
	})
	a.gateways = newGatewayListeners(ctx, a)
	a.applier = controller.NewApplier(controller.Options{
		IngressClass:           cfg.ingressClass,
		ControllerClass:        cfg.controllerClass,
		GatewayControllerName:  cfg.gatewayCtrl,
		AnnotationsPrefix:      cfg.annotationsPfx,
		LimitStatusCode:        cfg.limitStatus,
		GlobalAuth:             cfg.globalAuth,
		AllowedResponseHeaders: cfg.allowedHeaders,
		SSLPassthrough:         cfg.sslPassthrough,
		DefaultCertificate:     cfg.defaultCert,
		ACME:                   a.acme != nil,
		GatewayAddresses:       cfg.gatewayPool,
	}, a.swapper(), logger.Named("controller"))
	a.applier.SetMetrics(a.controllerMetrics)
	if a.cl != nil {
		a.cl.SetMetrics(a.controllerMetrics)
	} else {
		a.controllerMetrics.SetLeader(true) // standalone: no election, this process does it all
	}
	// applied runs after every table swap: ACME orders what new hosts need.
	a.applied = func() {
		if a.acme != nil {
			a.acme.Sync(ctx)
		}
	}
	return nil
}

// swapper returns what puts a new table in service: the proxy's, and the
// default certificate it names.
func (a *app) swapper() func(*route.Table) {
	startupGCDone := startupGC()
	return func(t *route.Table) {
		a.handler.Swap(t)
		a.gateways.sync(t)
		startupGCDone()
		if t.DefaultCertificate != nil {
			a.store.SetDefault(t.DefaultCertificate)
		} else {
			a.store.SetDefault(a.selfSigned)
		}
	}
}

// ready is /readyz: false once draining began, else the controller's
// readiness (a first table applied).
func (a *app) ready() bool {
	select {
	case <-a.notReady:
		return false
	default:
		return a.applier.Ready()
	}
}

// listen opens the three listeners; on an error none stays open.
func (a *app) listen(ctx context.Context) error {
	var lc net.ListenConfig
	var err error
	if a.httpLn, err = lc.Listen(ctx, "tcp", a.cfg.httpAddr); err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	if a.httpsLn, err = lc.Listen(ctx, "tcp", a.cfg.httpsAddr); err != nil {
		_ = a.httpLn.Close()
		return fmt.Errorf("--https-addr: %w", err)
	}
	if a.adminLn, err = lc.Listen(ctx, "tcp", a.cfg.metricsAddr); err != nil {
		_ = a.httpLn.Close()
		_ = a.httpsLn.Close()
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	return nil
}

// serverOptions are the options of every proxy server, named name in
// the logs.
func (a *app) serverOptions(name string) proxy.ServerOptions {
	cfg := a.cfg
	return proxy.ServerOptions{
		Logger:            a.logger.Named(name),
		MaxHeaderBytes:    cfg.maxHeaderBytes,
		ReadHeaderTimeout: cfg.readHeader,
		IdleTimeout:       cfg.idle,
		Metrics:           a.proxyMetrics,
		TrustedProxies:    cfg.trustedProxies,
		ProxyProtocol:     cfg.proxyProtocol,
		ProxyProtocolFrom: cfg.proxyProtocolFrom,
		NoFastPath:        !cfg.fastPath,
	}
}

// servers makes the plain, TLS and admin servers.
func (a *app) servers() {
	cfg := a.cfg
	serverOpts := a.serverOptions
	// The plain listener answers ACME challenges and redirects spec.tls
	// hosts to HTTPS; the TLS one answers 421 and adds HSTS (TLSOptions).
	httpOpts := serverOpts("http")
	if a.acme != nil {
		httpOpts.ACME = a.acme.HTTPHandler(http.NotFoundHandler())
	}
	httpOpts.HTTPSPort = cfg.httpsPort
	a.httpSrv = proxy.NewServer(a.handler, httpOpts)
	a.httpsSrv = proxy.NewServer(a.handler, serverOpts("https"))
	a.adminSrv = &http.Server{
		Handler:           proxy.NewAdminHandler(proxy.AdminOptions{Table: a.handler.Table, Ready: a.ready, Registry: a.reg, Pprof: cfg.enablePprof}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// start serves the listeners, runs the certificate store and, under
// srcCtx, the source of objects (the manifests folder or the cluster);
// the channel gets the first of them to stop.
func (a *app) start(ctx, srcCtx context.Context) <-chan error {
	errc := make(chan error, 4)
	go func() { errc <- serveErr("http", a.httpSrv.Serve(a.httpLn)) }()
	go func() {
		errc <- serveErr("https", a.httpsSrv.ServeTLS(a.httpsLn, proxy.TLSOptions{
			Config:           a.store.ServerConfig(),
			ObserveHandshake: a.store.ObserveHandshake,
			Covers:           a.store.Covers,
			Passthrough:      a.cfg.sslPassthrough,
		}))
	}()
	go func() { _ = a.store.Run(ctx) }()
	go func() { errc <- serveErr("metrics", a.adminSrv.Serve(a.adminLn)) }()
	go func() {
		if a.cfg.manifests != "" {
			src := controller.NewManifestSource(a.cfg.manifests, a.logger.Named("manifests"))
			errc <- src.Run(srcCtx, func(s controller.Snapshot, problems []controller.Problem) {
				a.applier.Apply(s, problems)
				a.applied()
			})
			return
		}
		errc <- a.cl.Run(srcCtx, a.applier, a.applied)
	}()
	cfg := a.cfg
	a.logger.Info("postern started", zap.String("version", version), zap.String("manifests", cfg.manifests),
		zap.String("http_addr", a.httpLn.Addr().String()), zap.String("https_addr", a.httpsLn.Addr().String()),
		zap.String("metrics_addr", a.adminLn.Addr().String()), zap.Bool("proxy_protocol", cfg.proxyProtocol),
		zap.String("proxy_protocol_from", cfg.proxyProtocolFrom.String()),
		zap.String("trusted_proxies", cfg.trustedProxies.String()))
	return errc
}

// drain reports not ready first, keeps serving for --shutdown-delay so
// that load balancers polling /readyz stop sending new connections (not
// when runErr says something already failed), stops the source, then
// closes the listeners and lets in-flight requests finish within the
// grace period.
func (a *app) drain(runErr error, stopSource func()) {
	cfg, logger := a.cfg, a.logger
	a.draining.Do(func() { close(a.notReady) })
	logger.Info("shutting down", zap.Duration("delay", cfg.shutdownDelay), zap.Duration("grace", cfg.shutdownGrace))
	if cfg.shutdownDelay > 0 && runErr == nil {
		time.Sleep(cfg.shutdownDelay)
	}
	stopSource()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for name, srv := range map[string]*proxy.Server{"http": a.httpSrv, "https": a.httpsSrv} {
		wg.Go(func() {
			if err := srv.Shutdown(shutdownCtx); err != nil {
				logger.Warn(name+" listener did not drain in time", zap.Error(err))
			}
		})
	}
	wg.Go(func() { a.gateways.shutdown(shutdownCtx) })
	wg.Wait()
	_ = a.adminSrv.Shutdown(shutdownCtx)
	logger.Info("stopped")
}

// connect prepares cluster mode from the command line; nothing runs until
// Run.
func connect(cfg *config, logger *zap.Logger) (*controller.Cluster, error) {
	defaultNS, _, _ := strings.Cut(cfg.defaultCert, "/")
	return controller.Connect(controller.ConnectOptions{
		Kubeconfig: cfg.kubeconfig,
		UserAgent:  "postern/" + version,
		Watch: controller.ClusterOptions{
			Namespaces:      cfg.watchNamespaces,
			SecretNamespace: defaultNS,
		},
		Namespace:       cfg.namespace,
		ElectionID:      cfg.electionID,
		IngressClass:    cfg.ingressClass,
		ControllerClass: cfg.controllerClass,
		Status: controller.StatusOptions{
			PublishService:   cfg.publishService,
			PublishAddresses: cfg.publishAddrs,
		},
		GatewayAPI:            cfg.watchGateway,
		GatewayControllerName: cfg.gatewayCtrl,
	}, logger)
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", name, err)
}

// startupGC raises the GC target for the first load, which decodes every
// object at once (at 10,000 Ingresses tens of MiB of short-lived garbage,
// and a good part of the start-up time spent in the collector), and
// returns the function that puts it back and returns that garbage to the
// OS, once, after the first table is live: start to ready at 10,000
// Ingresses from the manifests folder goes from about 3.2 s to about
// 2.5 s. In a container with a memory limit (cgroup memory.max) the
// collector also gets a soft limit at 80 % of it meanwhile, so that the
// higher target never gets the process killed where the default would
// not have. A GOGC or GOMEMLIMIT set by the operator is left alone.
func startupGC() (done func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prevLimit := debug.SetMemoryLimit(-1) // -1 reads it
	if limit, ok := cgroupMemoryLimit(); ok {
		debug.SetMemoryLimit(limit / 10 * 8)
	}
	prev := debug.SetGCPercent(startupGCPercent)
	var once sync.Once
	return func() {
		once.Do(func() {
			go func() {
				debug.SetGCPercent(prev)
				debug.SetMemoryLimit(prevLimit)
				debug.FreeOSMemory()
			}()
		})
	}
}

// startupGCPercent is the GC target of the first load (GOGC=300).
const startupGCPercent = 300

// cgroupMemoryLimit returns the memory limit of the process's cgroup (v2
// memory.max, or v1 memory.limit_in_bytes), if there is one.
func cgroupMemoryLimit() (int64, bool) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "unlimited"
			return 0, false
		}
		return n, true
	}
	return 0, false
}
