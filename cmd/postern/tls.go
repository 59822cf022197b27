package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/crypto/acme/autocert"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy/route"
	posterntls "github.com/postern-dev/postern/tls"
)

// newACME returns the ACME issuer, or nil when --acme-directory is empty.
// In a cluster its cache is Secrets in Postern's namespace (shared by every
// replica) and only the leader orders; standalone, it is a folder.
func newACME(cfg *config, cl *controller.Cluster, table func() *route.Table, reg prometheus.Registerer, logger *zap.Logger) (*posterntls.ACME, error) {
	if cfg.acmeDirectory == "" {
		return nil, nil
	}
	opts := posterntls.ACMEOptions{
		DirectoryURL: cfg.acmeDirectory,
		Email:        cfg.acmeEmail,
		CABundle:     cfg.acmeCABundle,
		Table:        table,
		Logger:       logger,
		Registry:     reg,
	}
	if cl != nil {
		opts.Cache = cl.ACMECache()
		opts.CanOrder = cl.Leading
	} else {
		dir := cfg.acmeCacheDir
		if dir == "" {
			base, err := os.UserCacheDir()
			if err != nil {
				return nil, fmt.Errorf("--acme-cache-dir is not set and there is no user cache folder: %w", err)
			}
			dir = filepath.Join(base, "postern", "acme")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("--acme-cache-dir: %w", err)
		}
		opts.Cache = autocert.DirCache(dir)
	}
	acme, err := posterntls.NewACME(opts)
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return acme, nil
}
