package main

import (
	"context"
	"net"
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/route"
)

// gatewayListeners serves the listeners of the Gateways that have
// addresses of their own (--gateway-addresses): after every table swap,
// sync opens a server on each address:port the table lists
// (route.Table.Listeners) and drains the ones it no longer lists. Each
// server decides its requests from its listener's table
// (proxy.ServerOptions.Table), and a TLS one chooses certificates from it
// (tls.Store.View).
type gatewayListeners struct {
	a      *app
	ctx    context.Context
	mu     sync.Mutex
	open   map[string]*gatewayServer // by address
	failed map[string]string         // address: the error last logged
	wg     sync.WaitGroup            // the servers' goroutines, drains included
}

// gatewayServer is one open Gateway listener.
type gatewayServer struct {
	srv *proxy.Server
	tls bool
}

func newGatewayListeners(ctx context.Context, a *app) *gatewayListeners {
	return &gatewayListeners{a: a, ctx: ctx, open: make(map[string]*gatewayServer), failed: make(map[string]string)}
}

// sync makes the open listeners those of t. A listener that cannot be
// opened (the address is not this host's, the port is taken) is logged
// once per error and tried again on the next swap; the rest is served.
func (g *gatewayListeners) sync(t *route.Table) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		return // shut down
	}
	want := make(map[string]*route.Listener, len(t.Listeners))
	for _, l := range t.Listeners {
		want[l.Address] = l
	}
	for addr, gs := range g.open {
		if l, ok := want[addr]; !ok || l.TLS != gs.tls {
			delete(g.open, addr)
			g.drain(addr, gs)
		}
	}
	for addr := range g.failed {
		if want[addr] == nil {
			delete(g.failed, addr)
		}
	}
	for addr, l := range want {
		if g.open[addr] != nil {
			continue
		}
		gs, err := g.serve(l)
		if err != nil {
			if g.failed[addr] != err.Error() {
				g.failed[addr] = err.Error()
				g.a.logger.Error("cannot listen on a Gateway's address; its listener is not served (is --gateway-addresses routed to this host, e.g. ip route add local <pool> dev lo?)",
					zap.String("address", addr), zap.String("gateway", l.Gateway.String()), zap.Error(err))
			}
			continue
		}
		delete(g.failed, addr)
		g.open[addr] = gs
		g.a.logger.Info("gateway listener open", zap.String("address", addr), zap.String("gateway", l.Gateway.String()), zap.Bool("tls", l.TLS))
	}
}

// serve opens l's address and serves it.
func (g *gatewayListeners) serve(l *route.Listener) (*gatewayServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(g.ctx, "tcp", l.Address)
	if err != nil {
		return nil, err
	}
	_, portText, _ := net.SplitHostPort(l.Address)
	port, _ := strconv.Atoi(portText)
	addr := l.Address
	opts := g.a.serverOptions("gateway")
	opts.Table, opts.Port = addr, port
	opts.HTTPSPort = 0
	srv := proxy.NewServer(g.a.handler, opts)
	gs := &gatewayServer{srv: srv, tls: l.TLS}
	g.wg.Go(func() {
		var err error
		if l.TLS {
			view := g.a.store.View(func() *route.Table { return g.a.handler.Table().Listener(addr) })
			err = srv.ServeTLS(ln, proxy.TLSOptions{
				Config:           view.ServerConfig(),
				ObserveHandshake: g.a.store.ObserveHandshake,
				Covers:           view.Covers,
			})
		} else {
			err = srv.Serve(ln)
		}
		if err := serveErr("gateway "+addr, err); err != nil {
			g.a.logger.Error("gateway listener stopped", zap.String("address", addr), zap.Error(err))
		}
	})
	return gs, nil
}

// drain stops gs in the background, letting its requests finish within
// the shutdown grace.
func (g *gatewayListeners) drain(addr string, gs *gatewayServer) {
	g.a.logger.Info("gateway listener closing", zap.String("address", addr))
	g.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.a.cfg.shutdownGrace)
		defer cancel()
		if err := gs.srv.Shutdown(ctx); err != nil {
			g.a.logger.Warn("gateway listener did not drain in time", zap.String("address", addr), zap.Error(err))
		}
	})
}

// shutdown drains every open listener within ctx and opens no more.
func (g *gatewayListeners) shutdown(ctx context.Context) {
	g.mu.Lock()
	open := g.open
	g.open = nil
	g.mu.Unlock()
	for addr, gs := range open {
		g.wg.Go(func() {
			if err := gs.srv.Shutdown(ctx); err != nil {
				g.a.logger.Warn("gateway listener did not drain in time", zap.String("address", addr), zap.Error(err))
			}
		})
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
