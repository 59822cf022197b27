package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// dashboardPath is the Grafana dashboard the chart ships (dashboard.enabled).
const dashboardPath = "../../charts/postern/dashboards/postern.json"

// tlsMetrics are the metrics of the tls package the dashboard uses; the
// TLS store registers them.
var tlsMetrics = []string{"postern_tls_certificate_expiry_timestamp_seconds", "postern_tls_handshakes_total"}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

// panel is the part of a dashboard panel the test reads.
type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// exportedMetrics returns the names of the series a real registry exports
// (the one serve makes, with the proxy's and the controller's metrics)
// after some traffic and a table build, so that every vector has series;
// histograms as their _bucket, _sum and _count series.
func exportedMetrics(t *testing.T) (map[string]bool, *prometheus.Registry) {
	t.Helper()
	reg := newRegistry()
	pm := observe.NewMetrics(reg)
	cm := controller.NewMetrics(reg)
	al := observe.NewAccessLog(observe.AccessLogOptions{Output: io.Discard, Sample: 1, Registerer: reg})
	t.Cleanup(func() { _ = al.Close(t.Context()) })

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	h := proxy.New(proxy.Options{Metrics: pm, AccessLog: al})
	t.Cleanup(h.CloseIdleConnections)
	be := &route.Backend{Key: "ns/web:80", Namespace: "ns", Service: "web", Port: "80",
		Endpoints: []route.Endpoint{{Address: backend.Listener.Addr().String()}}}
	applier := controller.NewApplier(controller.Options{}, h.Swap, zap.NewNop())
	applier.SetMetrics(cm)
	applier.Apply(controller.Snapshot{}, []controller.Problem{{Kind: "Ingress", Namespace: "ns", Name: "bad", Reason: controller.ReasonServiceNotFound}})
	h.Swap(route.NewTable(nil, &route.Route{Backends: route.Single(be), Source: route.Source{Namespace: "ns", Name: "web"}}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://app.test/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("request through the proxy: %d", rec.Code)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, mf := range mfs {
		name := mf.GetName()
		if len(mf.GetMetric()) == 0 {
			continue
		}
		names[name] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[name+suffix] = true
			}
		}
	}
	for _, n := range tlsMetrics {
		names[n] = true
	}
	return names, reg
}

var (
	// labelMatchers, grouping clauses, range selectors and strings name no
	// metric.
	promqlStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers  = regexp.MustCompile(`\{[^{}]*\}`)
	promqlGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlRanges    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlVariables = regexp.MustCompile(`\$\{?\w+\}?`)
	promqlIdents    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// labelValuesLabel is the label argument of a variable's
	// label_values(metric, label).
	labelValuesLabel = regexp.MustCompile(`,\s*\w+\s*\)\s*$`)
	// promqlWords are the functions, aggregations and keywords the
	// dashboard may use; any other identifier is a metric name.
	promqlWords = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "count": true, "topk": true, "bottomk": true,
		"rate": true, "irate": true, "increase": true, "histogram_quantile": true, "time": true, "vector": true,
		"clamp_min": true, "label_values": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true,
	}
)

// promqlMetrics returns the metric names expr refers to.
func promqlMetrics(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	e = promqlRanges.ReplaceAllString(e, " ")
	e = promqlVariables.ReplaceAllString(e, " ")
	var out []string
	for _, id := range promqlIdents.FindAllString(e, -1) {
		if !promqlWords[id] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestPromqlMetrics(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (code, le) (rate(postern_a_total{code=~"5..", x="{y}"}[$__rate_interval]))`: {"postern_a_total"},
		`histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m]))) / max(c)`:               {"b_bucket", "c"},
		`time() - max by (instance) (postern_t_seconds{job=~"$job"})`:                       {"postern_t_seconds"},
	} {
		if got := promqlMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetrics(%s) = %q, want %q", expr, got, want)
		}
	}
}

// loadDashboard reads and decodes the dashboard at dashboardPath.
func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	return d
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q: want both", d.Title, d.UID)
	}
	var hasDatasource bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDatasource = true
		}
	}
	if !hasDatasource {
		t.Error("no Prometheus datasource variable named datasource")
	}

	known, _ := exportedMetrics(t)
	used := make(map[string]bool)
	check := func(where, expr string) {
		names := promqlMetrics(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !known[n] {
				t.Errorf("%s: %q uses %s, which Postern does not export", where, expr, n)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		check("variable "+v.Name, labelValuesLabel.ReplaceAllString(q.Query, ")"))
	}
	checkPanels(t, d.Panels, check)
	// What the dashboard is for: these must be on it.
	for _, n := range []string{
		"postern_proxy_requests_total", "postern_proxy_request_duration_seconds_bucket", "postern_proxy_upstream_response_seconds_bucket",
		"postern_proxy_upstream_errors_total", "postern_controller_table_builds_total", "postern_controller_build_duration_seconds_bucket",
		"postern_controller_problems", "postern_tls_certificate_expiry_timestamp_seconds",
	} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}

// checkPanels checks the dashboard's panels: unique ids, a place in the 24
// columns and, for all but rows, the ${datasource} variable and at least
// one query, each passed to check.
func checkPanels(t *testing.T, panels []panel, check func(where, expr string)) {
	t.Helper()
	ids := make(map[int]bool)
	for _, p := range panels {
		where := "panel " + p.Title
		if ids[p.ID] {
			t.Errorf("%s: id %d used twice", where, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24 columns", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want the ${datasource} variable", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s: target datasource %+v, want the ${datasource} variable", where, tg.Datasource)
			}
			check(where, tg.Expr)
		}
	}
}

// TestRegistry checks the registry serve builds, with the proxy's and the
// controller's metrics on it: what it must export, and that Postern's own
// metrics pass client_golang's lint.
func TestRegistry(t *testing.T) {
	t.Parallel()
	known, reg := exportedMetrics(t)
	for _, n := range []string{"postern_build_info", "go_goroutines", "process_cpu_seconds_total",
		"postern_proxy_access_log_dropped_total", "postern_controller_leader", "postern_proxy_open_connections"} {
		if !known[n] {
			t.Errorf("the registry does not export %s", n)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "postern_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
