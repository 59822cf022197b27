// Command postern is the Postern ingress controller and L7 load balancer.
//
// It reads Ingresses, Services, EndpointSlices and Secrets (from a cluster,
// or from a folder of manifests with --manifests), builds a routing table and
// serves it. This package only parses flags and wires the pieces together;
// the logic lives in controller, proxy and tls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	switch {
	case errors.Is(err, errHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "postern:", err)
		os.Exit(1)
	}
}

// run is the whole program: it returns when ctx is cancelled (SIGTERM) and
// in-flight requests have drained, or on the first fatal error.
// "postern routes" prints the live table of a running Postern instead, and
// "postern migrate" reports on ingress-nginx's annotations.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "routes" {
		return runRoutes(ctx, args[1:], getenv, stdout)
	}
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], stdout, os.Stderr)
	}
	cfg, err := parseFlags(args, getenv, stdout)
	if err != nil {
		return err
	}
	if cfg.showVersion {
		_, err := fmt.Fprintf(stdout, "postern %s\n", version)
		return err
	}
	logger, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	return serve(ctx, cfg, logger)
}
