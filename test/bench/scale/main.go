// Command scale is the scale benchmark (`make bench-scale`): how Postern's
// controller and routing table grow with the number of Ingresses. For
// 1,000, 10,000 and 50,000 Ingresses (one host, one path, one Service and
// five endpoints each) it measures, in this process:
//
//   - the time controller.Build takes to turn the snapshot into a table;
//   - the table's size: hosts, routes, backends, and the heap it holds
//     (runtime.MemStats after a GC, before and after the build), next to the
//     heap of the snapshot itself (what informers or the manifests source
//     hold) and the RSS of the process;
//   - the cost of proxy/route Table.Lookup for a random host (ns and
//     allocations per lookup, with testing.Benchmark);
//   - at 10,000 Ingresses, the cost of one endpoint change: a full rebuild
//     (controller.Build) next to what the running controller does,
//     Applier.Apply, which sees that only an EndpointSlice changed and
//     patches the endpoints of that Service into the last table
//     (controller.PatchEndpoints), then swaps it into a proxy.Handler,
//     whose Swap is timed on its own too.
//
// It then builds the table of 10,000 Gateway API HTTPRoutes (-httproutes):
// build time, table size and one endpoint change applied.
//
// Then it runs the real binary standalone (bin/postern --manifests) on a
// generated folder of 10,000 Ingresses: the time from start to /readyz 200,
// its RSS then, and the time from rewriting one EndpointSlice's file to the
// first request routed to the new endpoint. Requests go to 127.0.0.1 only.
//
// It prints Markdown tables. It is a program, not a test, so `go test ./...`
// does not run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/postern-dev/postern/controller"
	"github.com/postern-dev/postern/proxy"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type config struct {
	sizes     []int
	endpoints int
	builds    int
	changeAt  int
	readyAt   int
	routes    int
	changes   int
	postern   string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	c := config{}
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	sizes := fs.String("sizes", "1000,10000,50000", "comma-separated numbers of Ingresses")
	fs.IntVar(&c.endpoints, "endpoints", 5, "endpoints per Ingress (per Service)")
	fs.IntVar(&c.builds, "builds", 3, "builds timed per size (the median is reported)")
	fs.IntVar(&c.changeAt, "change-at", 10000, "number of Ingresses at which one endpoint change is timed; 0 skips it")
	fs.IntVar(&c.changes, "changes", 5, "endpoint changes timed (median and max reported)")
	fs.IntVar(&c.readyAt, "ready-at", 10000, "number of Ingresses of the manifests folder the binary is started on; 0 skips it")
	fs.IntVar(&c.routes, "httproutes", 10000, "number of Gateway API HTTPRoutes whose table is built; 0 skips it")
	fs.StringVar(&c.postern, "postern", "bin/postern", "the Postern binary for the start-to-ready measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("invalid value %q in -sizes: want positive numbers", s)
		}
		c.sizes = append(c.sizes, n)
	}
	if c.endpoints < 1 || c.builds < 1 || c.changes < 1 {
		return errors.New("-endpoints, -builds and -changes must be at least 1")
	}

	fmt.Fprintf(out, "Scale benchmark, %s, %d CPUs (GOMAXPROCS %d), %s, %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), runtime.Version())

	fmt.Fprintf(out, "In process: controller.Build and route.Table.Lookup; %d endpoints per Ingress; build time is the median of %d builds.\n\n", c.endpoints, c.builds)
	fmt.Fprintln(out, "| Ingresses | endpoints | build | hosts | routes | backends | snapshot heap MiB | table heap MiB | process RSS MiB | lookup ns/op | lookup allocs/op |")
	fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range c.sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := measureSize(n, c.endpoints, c.builds)
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.0f | %d |\n",
			count(n), count(n*c.endpoints), ms(r.build), count(r.hosts), count(r.routes), count(r.backends), mib(r.snapshotHeap), mib(r.tableHeap), mib(r.rss), r.lookupNs, r.lookupAllocs)
	}

	if c.changeAt > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, a, sw := measureChange(c.changeAt, c.endpoints, c.changes)
		fmt.Fprintf(out, "\nOne endpoint change at %s Ingresses (an EndpointSlice with one address replaced), %d changes: a full rebuild, and the incremental path the controller takes.\n\n", count(c.changeAt), c.changes)
		fmt.Fprintln(out, "| step | median | max |")
		fmt.Fprintln(out, "|---|---:|---:|")
		fmt.Fprintf(out, "| controller.Build (full rebuild) | %s | %s |\n", ms(median(b)), ms(slices.Max(b)))
		fmt.Fprintf(out, "| controller.Applier.Apply (incremental: diff, PatchEndpoints, and the proxy's Handler.Swap) | %s | %s |\n", ms(median(a)), ms(slices.Max(a)))
		fmt.Fprintf(out, "| of which proxy.Handler.Swap (balancer, health, in-flight, pool and metrics state carried over for the changed backends) | %s | %s |\n", ms(median(sw)), ms(slices.Max(sw)))
	}

	if c.routes > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := measureGateway(c.routes, c.endpoints, c.builds, c.changes)
		fmt.Fprintf(out, "\nThe Gateway API: %s HTTPRoutes on one Gateway (two rules each, one with a header match), %d endpoints per Service; build is the median of %d builds, the endpoint change goes through controller.Applier.Apply (incremental) and the proxy's Handler.Swap, %d changes.\n\n", count(c.routes), c.endpoints, c.builds, c.changes)
		fmt.Fprintln(out, "| HTTPRoutes | build | hosts | routes | backends | snapshot heap MiB | table heap MiB | endpoint change, median | max |")
		fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %.1f | %.1f | %s | %s |\n", count(c.routes), ms(r.build), count(r.hosts), count(r.routes), count(r.backends), mib(r.snapshotHeap), mib(r.tableHeap), ms(median(r.apply)), ms(slices.Max(r.apply)))
	}

	if c.readyAt > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := measureBinary(ctx, c.postern, c.readyAt, c.endpoints, c.changes)
		if err != nil {
			return fmt.Errorf("binary at %d Ingresses: %w", c.readyAt, err)
		}
		fmt.Fprintf(out, "\nThe binary, standalone (%s --manifests, GOMAXPROCS %d, access log off) on %s Ingresses / %s endpoints in %d files (%.1f MiB of YAML).\n\n",
			c.postern, runtime.NumCPU(), count(c.readyAt), count(c.readyAt*c.endpoints), r.files, mib(r.yamlBytes))
		fmt.Fprintln(out, "| start to /readyz 200 | RSS when ready MiB | RSS 2 s later MiB | peak RSS (VmHWM) MiB | EndpointSlice file rewritten to first routed request, median | max |")
		fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|")
		fmt.Fprintf(out, "| %s | %.1f | %.1f | %.1f | %s | %s |\n", ms(r.ready), mib(r.rssReady), mib(r.rssLater), mib(r.hwm), ms(median(r.changes)), ms(slices.Max(r.changes)))
		fmt.Fprintf(out, "\nThe file-to-request time includes the manifests folder's hold-off, which batches bursts of file events.\n")
	}
	return nil
}

// sizeResult is what measureSize reports for one number of Ingresses.
type sizeResult struct {
	build                   time.Duration
	hosts, routes, backends int
	snapshotHeap, tableHeap uint64
	rss                     uint64
	lookupNs                float64
	lookupAllocs            int64
}

func measureSize(n, per, builds int) sizeResult {
	debug.FreeOSMemory()
	before := heap()
	snap := snapshot(n, per)
	withSnap := heap()
	opts := controller.Options{Now: created.Add(24 * time.Hour), Certificates: controller.NewCertificateCache()}

	build, table := timedBuilds(snap, opts, builds)
	withTable := heap()
	r := sizeResult{
		build:        build,
		snapshotHeap: sub(withSnap, before),
		tableHeap:    sub(withTable, withSnap),
		rss:          rss(),
		hosts:        len(table.VirtualHosts),
		backends:     len(table.Backends()),
	}
	for _, vh := range table.VirtualHosts {
		r.routes += len(vh.Routes)
	}

	// Lookups of random hosts, so that the cost includes missing the CPU's
	// caches as a large table does.
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := make([]string, 4096)
	for i := range hosts {
		hosts[i] = host(rng.IntN(n))
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if table.Lookup(hosts[i&4095], "/api/v1/items/42", nil) == nil {
				b.Fatal("no route")
			}
			i++
		}
	})
	r.lookupNs = float64(res.T.Nanoseconds()) / float64(res.N)
	r.lookupAllocs = res.AllocsPerOp()
	runtime.KeepAlive(snap)
	return r
}

// timedBuilds builds snap builds times and returns the median time and
// the last table; a synthetic snapshot with a Problem is a bug.
func timedBuilds(snap controller.Snapshot, opts controller.Options, builds int) (time.Duration, *route.Table) {
	var times []time.Duration
	var table *route.Table
	for range builds {
		table = nil //nolint:ineffassign // lets the GC below collect the last table
		runtime.GC()
		start := time.Now()
		t, problems := controller.Build(snap, opts)
		times = append(times, time.Since(start))
		if len(problems) > 0 {
			panic(fmt.Sprintf("synthetic snapshot has %d problems, first: %+v", len(problems), problems[0]))
		}
		table = t
	}
	return median(times), table
}

// measureChange times one EndpointSlice change: a full Build, and
// Applier.Apply as the running controller does it (incremental).
func measureChange(n, per, changes int) (build, apply, swaps []time.Duration) {
	debug.FreeOSMemory()
	snap := snapshot(n, per)
	opts := controller.Options{Now: created.Add(24 * time.Hour), Certificates: controller.NewCertificateCache()}
	// The swap is the proxy's own, with metrics, as in the binary: it
	// carries balancer, health, in-flight and connection-pool state over
	// to the new table.
	handler := proxy.New(proxy.Options{Metrics: observe.NewMetrics(prometheus.NewRegistry())})
	var swapped *route.Table
	var swapTime time.Duration
	applier := controller.NewApplier(opts, func(t *route.Table) {
		start := time.Now()
		handler.Swap(t)
		swapTime = time.Since(start)
		swapped = t
	}, zap.NewNop())
	applier.Apply(snap, nil)
	controller.Build(snap, opts) // warm the certificate cache and the heap

	for c := range changes {
		i := (c*7919 + 42) % n
		addrs := addresses(i, per)
		addrs[0] = fmt.Sprintf("127.254.%d.%d", c/250, c%250+1)
		next := snap
		next.EndpointSlices = slices.Clone(snap.EndpointSlices)
		next.EndpointSlices[i] = endpointSlice(i, addrs)

		runtime.GC()
		start := time.Now()
		t, _ := controller.Build(next, opts)
		build = append(build, time.Since(start))
		want := fmt.Sprintf("%s:%d", addrs[0], targetPort)
		if r := t.Lookup(host(i), "/", nil); r == nil || !slices.ContainsFunc(r.First().Endpoints, func(e route.Endpoint) bool { return e.Address == want }) {
			panic("the changed endpoint is not in the rebuilt table")
		}

		runtime.GC()
		start = time.Now()
		applier.Apply(next, nil)
		apply = append(apply, time.Since(start))
		swaps = append(swaps, swapTime)
		if r := swapped.Lookup(host(i), "/", nil); r == nil || !slices.ContainsFunc(r.First().Endpoints, func(e route.Endpoint) bool { return e.Address == want }) {
			panic("the changed endpoint is not in the applied table")
		}
		snap = next
	}
	runtime.KeepAlive(swapped)
	return build, apply, swaps
}

// heap returns the live heap after a full GC.
func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// rss returns this process's resident set size.
func rss() uint64 { return procStatus(os.Getpid(), "VmRSS") }

// procStatus returns a "kB" field of /proc/PID/status in bytes, 0 if
// unknown.
func procStatus(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// count formats n with thousands separators: 10,000.
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
