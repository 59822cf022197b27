package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy"
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

// serve wires the source, the controller and the proxy, and runs until ctx
// is done; then it drains within --shutdown-grace.
func serve(ctx context.Context, cfg *config, logger *zap.Logger) error {
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

	handler := proxy.New(proxy.Options{
		Logger:                logger.Named("proxy"),
		DialTimeout:           cfg.dialTimeout,
		ResponseHeaderTimeout: cfg.responseTimeout,
	})
	applier := controller.NewApplier(controller.Options{
		IngressClass:    cfg.ingressClass,
		ControllerClass: cfg.controllerClass,
	}, handler.Swap, logger.Named("controller"))

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
	adminLn, err := lc.Listen(ctx, "tcp", cfg.metricsAddr)
	if err != nil {
		_ = httpLn.Close()
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	httpSrv := proxy.NewServer(handler, proxy.ServerOptions{
		Logger:            logger.Named("http"),
		MaxHeaderBytes:    cfg.maxHeaderBytes,
		ReadHeaderTimeout: cfg.readHeader,
		IdleTimeout:       cfg.idle,
	})
	adminSrv := &http.Server{
		Handler:           proxy.NewAdminHandler(proxy.AdminOptions{Table: handler.Table, Ready: ready, Registry: reg}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}

	errc := make(chan error, 3)
	go func() { errc <- serveErr("http", httpSrv.Serve(httpLn)) }()
	go func() { errc <- serveErr("metrics", adminSrv.Serve(adminLn)) }()

	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	go func() {
		if cfg.manifests != "" {
			src := controller.NewManifestSource(cfg.manifests, logger.Named("manifests"))
			errc <- src.Run(srcCtx, func(s controller.Snapshot, problems []controller.Problem) {
				applier.Apply(s, problems)
			})
			return
		}
		errc <- runCluster(srcCtx, cfg, applier, logger)
	}()
	logger.Info("postern started", zap.String("version", version), zap.String("manifests", cfg.manifests),
		zap.String("http_addr", httpLn.Addr().String()), zap.String("metrics_addr", adminLn.Addr().String()))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	// Drain: report not ready first so load balancers stop sending new
	// connections, then let in-flight requests finish within the grace period.
	draining.Do(func() { close(notReady) })
	logger.Info("shutting down", zap.Duration("grace", cfg.shutdownGrace))
	stopSource()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http listener did not drain in time", zap.Error(err))
	}
	_ = adminSrv.Shutdown(shutdownCtx)
	logger.Info("stopped")
	return runErr
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", name, err)
}
