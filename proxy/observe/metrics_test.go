package observe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern-dev/postern/proxy/route"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestUpstreamErrorReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, UpstreamErrorDial},
		{"connect timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, UpstreamErrorDial},
		{"header timeout", fmt.Errorf("net/http: timeout awaiting response headers: %w", timeoutErr{}), UpstreamErrorTimeout},
		{"deadline", context.DeadlineExceeded, UpstreamErrorTimeout},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, UpstreamErrorReset},
		{"eof", io.EOF, UpstreamErrorReset},
		{"unexpected eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), UpstreamErrorReset},
		{"record header", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, UpstreamErrorTLS},
		{"alert", fmt.Errorf("remote error: %w", tls.AlertError(40)), UpstreamErrorTLS},
		{"tls text", errors.New("tls: handshake failure"), UpstreamErrorTLS},
		{"tls timeout", errors.New("net/http: TLS handshake timeout"), UpstreamErrorTLS},
		{"protocol switch", errors.New(`backend tried to switch protocol "h2c" when "websocket" was requested`), UpstreamErrorOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := UpstreamErrorReason(tt.err); got != tt.want {
				t.Errorf("UpstreamErrorReason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// A request that finishes after its table was swapped out is still
// counted under its route's labels.
func TestMetricsRouteOfOldTable(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	be := &route.Backend{Key: "ns/api:80", Namespace: "ns", Service: "api"}
	old := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(be), Source: route.Source{Namespace: "ns", Name: "shop"}}
	m.Sync(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("a.test", []*route.Route{old})}, nil))
	m.Sync(route.Empty())
	NewSink(m, nil).Done(&Record{Method: "GET", Status: 200, Duration: time.Millisecond, Route: old, Backend: be})
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ns", "shop", "api", "GET", "200")); got != 1 {
		t.Errorf("requests_total of the old route = %g, want 1", got)
	}
}

// A request answered before its backend was chosen (413 before the pick)
// is labelled with its route's only backend.
func TestMetricsLabelsOfLocalAnswer(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	be := &route.Backend{Key: "ns/api:80", Namespace: "ns", Service: "api"}
	rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(be), Source: route.Source{Namespace: "ns", Name: "shop"}}
	m.Sync(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("a.test", []*route.Route{rt})}, nil))
	NewSink(m, nil).Done(&Record{Method: "POST", Status: 413, Route: rt})
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ns", "shop", "api", "POST", "413")); got != 1 {
		t.Errorf("requests_total = %g, want the 413 under the route's Service", got)
	}
}

func TestMethodLabels(t *testing.T) {
	t.Parallel()
	for i, m := range methods[:len(methods)-1] {
		if got := methodIndex(m); got != i {
			t.Errorf("methodIndex(%s) = %d, want %d", m, got, i)
		}
	}
	for _, m := range []string{"BREW", "get", "PROPFIND", ""} {
		if got := methods[methodIndex(m)]; got != "OTHER" {
			t.Errorf("method %q counted as %q, want OTHER", m, got)
		}
	}
	if !slices.Contains(methods[:], "OTHER") {
		t.Error("no OTHER label")
	}
}

// Every hand-off reason has its series from the start, and an unknown
// one counts as other.
func TestHandoffReasons(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	m.Handoff(HandoffUpgrade)
	m.Handoff("no such reason")
	for i, r := range HandoffReasons {
		want := 0.0
		if r == HandoffUpgrade || r == HandoffOther {
			want = 1
		}
		if got := testutil.ToFloat64(m.handoffs[i]); got != want {
			t.Errorf("handoffs{reason=%q} = %g, want %g", r, got, want)
		}
	}
}

// TestPatchMatchesSync checks the incremental path for metric children (a
// table made by WithBackends from the one synced) against the full one:
// every route of the patched table finds children with its labels, and
// none is left for routes the patch replaced.
func TestPatchMatchesSync(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	var backends []*route.Backend
	var hosts []*route.VirtualHost
	for i := range 4 {
		b := &route.Backend{Key: fmt.Sprintf("ns/svc%d:80", i), Namespace: "ns", Service: fmt.Sprintf("svc%d", i)}
		backends = append(backends, b)
		hosts = append(hosts, route.NewVirtualHost(fmt.Sprintf("h%d.test", i), []*route.Route{
			{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "a"}},
			{Match: route.Match{PathType: route.PathExact, Path: "/x"}, Backends: route.Single(b), Source: route.Source{Namespace: "ns", Name: "b"}},
		}))
	}
	table := route.NewTable(hosts, &route.Route{Backends: route.Single(backends[0]), Source: route.Source{Namespace: "ns", Name: "def"}})
	m.Sync(table)
	for step := range 20 {
		b := backends[step%len(backends)]
		nb := *b
		nb.Endpoints = []route.Endpoint{{Address: fmt.Sprintf("127.0.0.%d:80", step+1)}}
		backends[step%len(backends)] = &nb
		next := table.WithBackends(map[*route.Backend]*route.Backend{b: &nb})
		if !m.Patch(next.Patch()) {
			t.Fatalf("step %d: Patch refused", step)
		}
		table = next
		routes := *m.routes.Load()
		n := 0
		for rt := range table.Routes() {
			for _, be := range append(backendsOf(rt), nil) {
				n++
				rm := routes[routeBackend{rt, be}]
				if rm == nil || rm.labels != labelsOf(rt, be) {
					t.Fatalf("step %d: route %s %s with %v has metric children %v", step, rt.Source, rt.Path, be, rm)
				}
			}
		}
		if len(routes) != n {
			t.Fatalf("step %d: %d routes with metric children, the table has %d", step, len(routes), n)
		}
	}
}
