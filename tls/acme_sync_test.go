package tls

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/acme"

	"github.com/postern-dev/postern/proxy/route"
)

// scheduler wires an ACME issuer to a fake obtain and a recording clock.
type scheduler struct {
	*acmeFixture
	mu      sync.Mutex
	calls   map[string]int
	retries []time.Duration
	fire    []func()
	stopped int
	running atomic.Int64
	maxRun  atomic.Int64
}

type fakeTimer struct{ s *scheduler }

func (t fakeTimer) Stop() bool {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.stopped++
	return true
}

func newScheduler(t *testing.T, obtain func(host string) (*stdtls.Certificate, error), hosts ...*route.TLSHost) *scheduler {
	t.Helper()
	s := &scheduler{acmeFixture: newACMEFixture(t, true, hosts...), calls: make(map[string]int)}
	s.acme.obtain = func(_ context.Context, host string) (*stdtls.Certificate, error) {
		n := s.running.Add(1)
		defer s.running.Add(-1)
		for {
			m := s.maxRun.Load()
			if n <= m || s.maxRun.CompareAndSwap(m, n) {
				break
			}
		}
		s.mu.Lock()
		s.calls[host]++
		s.mu.Unlock()
		return obtain(host)
	}
	s.acme.afterFunc = func(d time.Duration, f func()) stopper {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.retries = append(s.retries, d)
		s.fire = append(s.fire, f)
		return fakeTimer{s}
	}
	return s
}

func (s *scheduler) callsOf(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[host]
}

func TestACMESyncLimits(t *testing.T) {
	t.Parallel()
	root := newTestCA(t, "root", nil)
	cert := root.valid(t, "ecdsa", "x.example.com").routeCert(t, "", "x").Cert
	release := make(chan struct{})
	started := make(chan string, 16)
	hosts := []*route.TLSHost{
		acmeHost("h1.example.com"), acmeHost("h2.example.com"), acmeHost("h3.example.com"),
		acmeHost("h4.example.com"), acmeHost("h5.example.com"),
		acmeHost("*.wild.example.com"),                 // never ordered
		{Host: "secret.example.com", Certificate: nil}, // not ACME
	}
	s := newScheduler(t, func(host string) (*stdtls.Certificate, error) {
		started <- host
		<-release
		return cert, nil
	}, hosts...)
	ctx := context.Background()
	s.acme.Sync(ctx)
	<-started
	<-started
	// Table swaps while orders run start nothing twice.
	s.acme.Sync(ctx)
	s.acme.Sync(ctx)
	close(release)
	s.acme.wg.Wait()

	if m := s.maxRun.Load(); m != 2 {
		t.Errorf("%d orders ran at once, want 2", m)
	}
	for _, h := range hosts[:5] {
		if n := s.callsOf(h.Host); n != 1 {
			t.Errorf("%s ordered %d times, want 1", h.Host, n)
		}
	}
	if n := s.callsOf("*.wild.example.com") + s.callsOf("secret.example.com"); n != 0 {
		t.Errorf("wildcard or secret host ordered %d times", n)
	}
	// Ready hosts are not ordered again.
	s.acme.Sync(ctx)
	s.acme.wg.Wait()
	if n := s.callsOf("h1.example.com"); n != 1 {
		t.Errorf("ready host ordered again: %d calls", n)
	}
	if n := len(s.acme.Certificates()); n != 0 {
		// The fake obtain bypasses autocert, which holds nothing.
		t.Errorf("Certificates() = %d entries from an empty autocert", n)
	}
}

func TestACMEBackoff(t *testing.T) {
	t.Parallel()
	s := newScheduler(t, func(string) (*stdtls.Certificate, error) {
		return nil, errors.New("validation failed")
	}, acmeHost("a.example.com"))
	ctx := context.Background()
	s.acme.Sync(ctx)
	s.acme.wg.Wait()
	for range 7 {
		// A table swap while a retry is pending does not start another.
		s.acme.Sync(ctx)
		s.acme.wg.Wait()
		s.mu.Lock()
		next := s.fire[len(s.fire)-1]
		s.mu.Unlock()
		next()
		s.acme.wg.Wait()
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 320 * time.Second, 10 * time.Minute, 10 * time.Minute}
	s.mu.Lock()
	got := slices.Clone(s.retries)
	s.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("retry delays %v, want %v", got, want)
	}
	if n := s.callsOf("a.example.com"); n != 8 {
		t.Errorf("%d attempts, want 8", n)
	}

	// The host leaves the table: its pending retry is stopped, and firing
	// it anyway does nothing.
	s.table.set()
	s.acme.Sync(ctx)
	s.mu.Lock()
	stopped, last := s.stopped, s.fire[len(s.fire)-1]
	s.mu.Unlock()
	if stopped != 1 {
		t.Errorf("%d retries stopped, want 1", stopped)
	}
	last()
	s.acme.wg.Wait()
	if n := s.callsOf("a.example.com"); n != 8 {
		t.Errorf("a removed host was retried: %d attempts", n)
	}
}

// TestACMEWaitForLeader checks that a replica waiting for the leader looks
// at the shared cache at least once a minute, and logs no failure.
func TestACMEWaitForLeader(t *testing.T) {
	t.Parallel()
	s := newScheduler(t, func(string) (*stdtls.Certificate, error) {
		return nil, errNotCached
	}, acmeHost("a.example.com"))
	s.acme.Sync(context.Background())
	s.acme.wg.Wait()
	for range 5 {
		s.mu.Lock()
		next := s.fire[len(s.fire)-1]
		s.mu.Unlock()
		next()
		s.acme.wg.Wait()
	}
	s.mu.Lock()
	got := slices.Clone(s.retries)
	s.mu.Unlock()
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute, time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	if n := s.logs.FilterMessage("acme certificate order failed").Len(); n != 0 {
		t.Errorf("%d failures logged while waiting for the leader", n)
	}
	if got := testutil.ToFloat64(s.acme.badOrder); got != 0 {
		t.Errorf("%v failed orders counted while waiting for the leader", got)
	}
}

func TestACMERateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	limited := &acme.Error{
		StatusCode:  http.StatusTooManyRequests,
		ProblemType: "urn:ietf:params:acme:error:rateLimited",
		Detail:      "too many certificates already issued",
		Header:      http.Header{"Retry-After": []string{"3600"}},
	}
	s := newScheduler(t, func(string) (*stdtls.Certificate, error) {
		return nil, fmt.Errorf("order: %w", limited)
	}, acmeHost("a.example.com"))
	s.acme.Sync(context.Background())
	s.acme.wg.Wait()
	s.mu.Lock()
	got := slices.Clone(s.retries)
	s.mu.Unlock()
	if len(got) != 1 || got[0] < 59*time.Minute {
		t.Errorf("retry after %v, want the hour the CA asked for", got)
	}
	entries := s.logs.FilterMessage("acme certificate order failed").AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("%d failure logs", len(entries))
	}
	m := entries[0].ContextMap()
	if m["host"] != "a.example.com" || m["detail"] != limited.Detail || m["problem_type"] != limited.ProblemType {
		t.Errorf("failure logged with %v", m)
	}
}

// TestACMEHostGoneWhileOrdering checks that a host that leaves and comes
// back while its order runs is not ordered twice at once.
func TestACMEHostGoneWhileOrdering(t *testing.T) {
	t.Parallel()
	root := newTestCA(t, "root", nil)
	cert := root.valid(t, "ecdsa", "a.example.com").routeCert(t, "", "a").Cert
	release, started := make(chan struct{}), make(chan struct{}, 4)
	s := newScheduler(t, func(string) (*stdtls.Certificate, error) {
		started <- struct{}{}
		<-release
		return cert, nil
	}, acmeHost("a.example.com"))
	ctx := context.Background()
	s.acme.Sync(ctx)
	<-started
	s.table.set()
	s.acme.Sync(ctx)
	s.table.set(acmeHost("a.example.com"))
	s.acme.Sync(ctx)
	close(release)
	s.acme.wg.Wait()
	if n := s.callsOf("a.example.com"); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	if _, ok := (*s.acme.ready.Load())["a.example.com"]; !ok {
		t.Error("the host that came back is not ready")
	}

	// Gone for good while ordering: forgotten when the order ends.
	release2 := make(chan struct{})
	s2 := newScheduler(t, func(string) (*stdtls.Certificate, error) { <-release2; return cert, nil }, acmeHost("b.example.com"))
	s2.acme.Sync(ctx)
	s2.table.set()
	s2.acme.Sync(ctx)
	close(release2)
	s2.acme.wg.Wait()
	if len(*s2.acme.ready.Load()) != 0 {
		t.Error("a host that left the table is ready")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for failures, want := range map[int]time.Duration{
		1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 320 * time.Second,
		7: 10 * time.Minute, 100: 10 * time.Minute, 1 << 30: 10 * time.Minute,
	} {
		if got := backoff(failures); got != want {
			t.Errorf("backoff(%d) = %v, want %v", failures, got, want)
		}
	}
}
