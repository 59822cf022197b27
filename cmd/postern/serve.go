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
	reg := newRegistry()

	proxyMetrics := observe.NewMetrics(reg)
	controllerMetrics := controller.NewMetrics(reg)
	var accessLog *observe.AccessLog
	if cfg.accessLog {
		accessLog = observe.NewAccessLog(observe.AccessLogOptions{
			Output: os.Stdout, Format: cfg.logFormat, Sample: cfg.accessLogSample,
			Registerer: reg, Logger: logger.Named("access-log"),
		})
		// Deferred first, so it runs last: after the listeners drained,
		// the lines still queued are written.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := accessLog.Close(ctx); err != nil {
				logger.Warn("access log lines lost at exit", zap.Error(err))
			}
		}()
	}

	handler := proxy.New(proxy.Options{
		Logger:                logger.Named("proxy"),
		DialTimeout:           cfg.dialTimeout,
		ResponseHeaderTimeout: cfg.responseTimeout,
		Metrics:               proxyMetrics,
		AccessLog:             accessLog,
	})
	var cl *controller.Cluster
	if cfg.manifests == "" {
		var err error
		if cl, err = connect(cfg, logger); err != nil {
			return err
		}
	}
	selfSigned, err := posterntls.SelfSigned(time.Now())
	if err != nil {
		return fmt.Errorf("default certificate: %w", err)
	}
	acme, err := newACME(cfg, cl, handler.Table, reg, logger)
	if err != nil {
		return err
	}
	store := posterntls.NewStore(posterntls.StoreOptions{
		Table:    handler.Table,
		Default:  selfSigned,
		ACME:     acme,
		Logger:   logger,
		Registry: reg,
	})
	startupGCDone := startupGC()
	swap := func(t *route.Table) {
		handler.Swap(t)
		startupGCDone()
		if t.DefaultCertificate != nil {
			store.SetDefault(t.DefaultCertificate)
		} else {
			store.SetDefault(selfSigned)
		}
	}
	applier := controller.NewApplier(controller.Options{
		IngressClass:       cfg.ingressClass,
		ControllerClass:    cfg.controllerClass,
		DefaultCertificate: cfg.defaultCert,
		ACME:               acme != nil,
	}, swap, logger.Named("controller"))
	applier.SetMetrics(controllerMetrics)
	if cl != nil {
		cl.SetMetrics(controllerMetrics)
	} else {
		controllerMetrics.SetLeader(true) // standalone: no election, this process does it all
	}
	// applied runs after every table swap: ACME orders what new hosts need.
	applied := func() {
		if acme != nil {
			acme.Sync(ctx)
		}
	}

	var draining sync.Once
	var notReady = make(chan struct{})
	ready := func() bool {
		select {
		case <-notReady:
			return false
		default:
			return applier.Ready()
		}
	}

	var lc net.ListenConfig
	httpLn, err := lc.Listen(ctx, "tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	httpsLn, err := lc.Listen(ctx, "tcp", cfg.httpsAddr)
	if err != nil {
		_ = httpLn.Close()
		return fmt.Errorf("--https-addr: %w", err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", cfg.metricsAddr)
	if err != nil {
		_ = httpLn.Close()
		_ = httpsLn.Close()
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	serverOpts := func(name string) proxy.ServerOptions {
		return proxy.ServerOptions{
			Logger:            logger.Named(name),
			MaxHeaderBytes:    cfg.maxHeaderBytes,
			ReadHeaderTimeout: cfg.readHeader,
			IdleTimeout:       cfg.idle,
			Metrics:           proxyMetrics,
			TrustedProxies:    cfg.trustedProxies,
			ProxyProtocol:     cfg.proxyProtocol,
			ProxyProtocolFrom: cfg.proxyProtocolFrom,
			NoFastPath:        !cfg.fastPath,
		}
	}
	// The plain listener answers ACME challenges and redirects spec.tls
	// hosts to HTTPS; the TLS one answers 421 and adds HSTS (TLSOptions).
	httpOpts := serverOpts("http")
	if acme != nil {
		httpOpts.ACME = acme.HTTPHandler(http.NotFoundHandler())
	}
	httpOpts.HTTPSPort = cfg.httpsPort
	httpSrv := proxy.NewServer(handler, httpOpts)
	httpsSrv := proxy.NewServer(handler, serverOpts("https"))
	adminSrv := &http.Server{
		Handler:           proxy.NewAdminHandler(proxy.AdminOptions{Table: handler.Table, Ready: ready, Registry: reg, Pprof: cfg.enablePprof}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}

	errc := make(chan error, 4)
	go func() { errc <- serveErr("http", httpSrv.Serve(httpLn)) }()
	go func() {
		errc <- serveErr("https", httpsSrv.ServeTLS(httpsLn, proxy.TLSOptions{
			Config:           store.ServerConfig(),
			ObserveHandshake: store.ObserveHandshake,
			Covers:           store.Covers,
		}))
	}()
	go func() { _ = store.Run(ctx) }()
	go func() { errc <- serveErr("metrics", adminSrv.Serve(adminLn)) }()

	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	go func() {
		if cfg.manifests != "" {
			src := controller.NewManifestSource(cfg.manifests, logger.Named("manifests"))
			errc <- src.Run(srcCtx, func(s controller.Snapshot, problems []controller.Problem) {
				applier.Apply(s, problems)
				applied()
			})
			return
		}
		errc <- cl.Run(srcCtx, applier, applied)
	}()
	logger.Info("postern started", zap.String("version", version), zap.String("manifests", cfg.manifests),
		zap.String("http_addr", httpLn.Addr().String()), zap.String("https_addr", httpsLn.Addr().String()),
		zap.String("metrics_addr", adminLn.Addr().String()), zap.Bool("proxy_protocol", cfg.proxyProtocol),
		zap.String("proxy_protocol_from", cfg.proxyProtocolFrom.String()),
		zap.String("trusted_proxies", cfg.trustedProxies.String()))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	// Drain: report not ready first, keep serving for --shutdown-delay so
	// that load balancers polling /readyz stop sending new connections,
	// then close the listeners and let in-flight requests finish within
	// the grace period.
	draining.Do(func() { close(notReady) })
	logger.Info("shutting down", zap.Duration("delay", cfg.shutdownDelay), zap.Duration("grace", cfg.shutdownGrace))
	if cfg.shutdownDelay > 0 && runErr == nil {
		time.Sleep(cfg.shutdownDelay)
	}
	stopSource()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for name, srv := range map[string]*proxy.Server{"http": httpSrv, "https": httpsSrv} {
		wg.Go(func() {
			if err := srv.Shutdown(shutdownCtx); err != nil {
				logger.Warn(name+" listener did not drain in time", zap.Error(err))
			}
		})
	}
	wg.Wait()
	_ = adminSrv.Shutdown(shutdownCtx)
	logger.Info("stopped")
	return runErr
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
