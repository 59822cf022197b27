package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern-dev/postern/proxy/route"
)

// AdminOptions configure the admin handler. Nil fields turn their endpoint
// off (404), except Ready.
type AdminOptions struct {
	// Ready reports whether the process should receive traffic: /readyz
	// answers 200 when it returns true, 503 otherwise. Nil means never
	// ready, so that forgetting to wire it cannot send traffic to a proxy
	// without routes.
	Ready func() bool
	// Table returns the table being served, for /debug/routes. Nil turns
	// /debug/routes off.
	Table func() *route.Table
	// Registry is gathered by /metrics. Nil turns /metrics off.
	Registry *prometheus.Registry
	// Pprof serves Go's profiles under /debug/pprof/ (--enable-pprof).
	// False, the default, answers 404 there: profiles show the process's
	// insides and a CPU profile costs CPU.
	Pprof bool
}

// NewAdminHandler returns the handler of the --metrics-addr port:
//
//	/healthz        200 "ok" while the process runs (liveness)
//	/readyz         200 "ok" when Ready() is true, else 503 (readiness)
//	/debug/routes   the live routing table as indented JSON: each route's
//	                Source (the Ingress that declared it) and Backend
//	                (Service, port, endpoints)
//	/metrics        Prometheus metrics from Registry
//	/debug/pprof/   Go's profiles, only when Pprof is set
//
// Only GET and HEAD are allowed (405 otherwise); other paths are 404.
func NewAdminHandler(opts AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil && opts.Ready() {
			writeText(w, http.StatusOK, "ok\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready\n")
	})
	if opts.Table != nil {
		mux.HandleFunc("/debug/routes", func(w http.ResponseWriter, _ *http.Request) {
			t := opts.Table()
			if t == nil {
				t = route.Empty()
			}
			b, err := json.MarshalIndent(t, "", "  ")
			if err != nil {
				writeText(w, http.StatusInternalServerError, "cannot render the table\n")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			_, _ = w.Write(append(b, '\n'))
		})
	}
	if opts.Registry != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{
			// One failing collector should not hide every other metric.
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if opts.Pprof {
		// pprof.Index serves the named profiles (heap, goroutine, ...)
		// under /debug/pprof/ too.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return allowGetHead(mux)
}

// allowGetHead answers 405 to any method but GET and HEAD (RFC 9110
// §15.5.6: with an Allow field).
func allowGetHead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
