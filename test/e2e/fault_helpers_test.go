//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// clientset returns a client for the test cluster, as the admin.
func clientset(tb testing.TB) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// churn updates Ingress ns/name n times, interval apart (or slower if the
// API server is), each time moving its first path to /churn-<i>, and
// returns the last path and how long it all took.
func churn(t *testing.T, cs kubernetes.Interface, ns, name string, n int, interval time.Duration) (string, time.Duration) {
	t.Helper()
	ctx := t.Context()
	ings := cs.NetworkingV1().Ingresses(ns)
	ing, err := ings.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	path := ""
	for i := 1; i <= n; i++ {
		<-tick.C
		path = fmt.Sprintf("/churn-%d", i)
		ing.Spec.Rules[0].HTTP.Paths[0].Path = path
		if ing, err = ings.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update %d of Ingress %s/%s: %v", i, ns, name, err)
		}
	}
	return path, time.Since(start)
}

// endpoint is one entry of an EndpointSlice; the zero value is none.
type endpoint struct {
	ip          string
	ready       bool
	terminating bool // not ready, still serving, terminating: a pod shutting down
}

// setEndpoints makes eps the endpoints of the EndpointSlice of Service svc
// (the one service() wrote).
func setEndpoints(t *testing.T, cs kubernetes.Interface, ns, svc string, eps []endpoint) {
	t.Helper()
	api := cs.DiscoveryV1().EndpointSlices(ns)
	s, err := api.Get(t.Context(), svc+"-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints = nil
	for _, e := range eps {
		if e.ip == "" {
			continue
		}
		ready, serving, terminating := e.ready, true, e.terminating
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		})
	}
	if _, err := api.Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitEndpoints waits until Postern's table sends host's "/" to the ready
// endpoints of eps (port 9000).
func waitEndpoints(t *testing.T, p *Postern, host string, eps []endpoint) {
	t.Helper()
	var want []string
	for _, e := range eps {
		if e.ip != "" && e.ready {
			want = append(want, e.ip+":9000")
		}
	}
	slices.Sort(want)
	eventually(t, 20*time.Second, func() error {
		if got := routedEndpoints(t, p, host); !slices.Equal(got, want) {
			return fmt.Errorf("endpoints of %s: %v, want %v", host, got, want)
		}
		return nil
	})
}

// routedEndpoints returns the sorted endpoint addresses of the first route
// of host in Postern's live table (/debug/routes).
func routedEndpoints(t *testing.T, p *Postern, host string) []string {
	t.Helper()
	code, body := httpGet(p.MetricsAddr, "", "/debug/routes")
	if code != 200 {
		return []string{fmt.Sprintf("/debug/routes: %d %s", code, firstLine(body))}
	}
	var table struct {
		VirtualHosts []struct {
			Host   string `json:"host"`
			Routes []struct {
				Backends []struct {
					Backend struct {
						Endpoints []struct {
							Address string `json:"address"`
						} `json:"endpoints"`
					} `json:"backend"`
				} `json:"backends"`
			} `json:"routes"`
		} `json:"virtualHosts"`
	}
	if err := json.Unmarshal([]byte(body), &table); err != nil {
		t.Fatalf("/debug/routes: %v", err)
	}
	var out []string
	for _, vh := range table.VirtualHosts {
		if vh.Host != host || len(vh.Routes) == 0 || len(vh.Routes[0].Backends) == 0 {
			continue
		}
		for _, e := range vh.Routes[0].Backends[0].Backend.Endpoints {
			out = append(out, e.Address)
		}
	}
	slices.Sort(out)
	return out
}

// metricSum returns the sum of every series of a metric on Postern's
// /metrics.
func metricSum(t *testing.T, p *Postern, name string) float64 {
	t.Helper()
	code, body := httpGet(p.MetricsAddr, "", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, firstLine(body))
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// sseStream is one GET of echo's /stream through Postern, read as it
// comes.
type sseStream struct {
	first chan struct{} // closed when the first event (or a failure) came
	done  chan struct{} // closed when the response ended
	// Set before first is closed:
	status  int
	backend string // the echo backend streaming it
	// Set before done is closed:
	events int
	err    error // the error that ended the body; nil for a clean end
}

func startStream(t *testing.T, p *Postern, host, path string) *sseStream {
	t.Helper()
	s := &sseStream{first: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	go func() {
		defer close(s.done)
		firstDone := sync.OnceFunc(func() { close(s.first) })
		defer firstDone()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+path, nil)
		if err != nil {
			s.err = err
			return
		}
		req.Host = host
		// A connection of its own: streams must not queue behind each other.
		c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := c.Do(req)
		if err != nil {
			s.err = err
			return
		}
		defer resp.Body.Close()
		s.status = resp.StatusCode
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if !errors.Is(err, io.EOF) || line != "" {
					s.err = err
				}
				return
			}
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			s.events++
			if s.events == 1 {
				s.backend, _, _ = strings.Cut(data, " ")
				firstDone()
			}
		}
	}()
	return s
}

// waitFirst waits for the stream's first event.
func (s *sseStream) waitFirst(t *testing.T) {
	t.Helper()
	select {
	case <-s.first:
	case <-time.After(10 * time.Second):
		t.Fatal("no first event within 10 s")
	}
	if s.backend == "" {
		select {
		case <-s.done:
			t.Fatalf("stream failed before its first event: status %d, %v", s.status, s.err)
		case <-time.After(time.Second):
			t.Fatalf("stream failed before its first event: status %d", s.status)
		}
	}
}

// wait waits for the stream's end.
func (s *sseStream) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("stream did not end within 20 s")
	}
}

// hangingBackend listens on addr, accepts every connection and never
// answers; it returns the count of connections accepted.
func hangingBackend(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		accepted atomic.Int64
		mu       sync.Mutex
		conns    []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }() // read, never write
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return &accepted
}

// dialWebSocket opens a WebSocket to path on host through the HTTP
// listener addr.
func dialWebSocket(addr, host, path string) (*websocket.Conn, error) {
	cfg, err := websocket.NewConfig("ws://"+host+path, "http://"+host+"/")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ws, nil
}

// echoOnce sends msg on c and waits for it to come back; it returns the
// round trip.
func echoOnce(c *websocket.Conn, msg string) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if err := websocket.Message.Send(c, msg); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	var got string
	if err := websocket.Message.Receive(c, &got); err != nil {
		return 0, fmt.Errorf("receive: %w", err)
	}
	if got != msg {
		return 0, fmt.Errorf("echo %q, want %q", got, msg)
	}
	return time.Since(start), nil
}

// getStatus sends GET http://addr/path with Host host and returns the
// status, reading the body whole.
func getStatus(c *http.Client, addr, host, path string) (int, error) {
	code, _, err := getBody(c, addr, host, path)
	return code, err
}

// getBody sends GET http://addr/path with Host host and returns status and
// body; err is set when no response came or its body was cut short.
func getBody(c *http.Client, addr, host, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
