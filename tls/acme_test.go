package tls

import (
	"context"
	stdtls "crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/acme/autocert"

	"github.com/postern-dev/postern/proxy/route"
)

// fakeCA counts the requests an ACME client makes and answers 404 to all
// of them, which ends any order at once.
type fakeCA struct {
	*httptest.Server
	requests atomic.Int64
}

func newFakeCA(t testing.TB) *fakeCA {
	t.Helper()
	ca := &fakeCA{}
	ca.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ca.requests.Add(1)
		http.NotFound(w, nil)
	}))
	t.Cleanup(ca.Close)
	return ca
}

// liveTable is a table tests swap.
type liveTable struct{ p atomic.Pointer[route.Table] }

func newLiveTable(hosts ...*route.TLSHost) *liveTable {
	l := &liveTable{}
	l.set(hosts...)
	return l
}

func (l *liveTable) set(hosts ...*route.TLSHost) { l.p.Store(tableOf(hosts...)) }
func (l *liveTable) get() *route.Table           { return l.p.Load() }

func acmeHost(h string) *route.TLSHost { return &route.TLSHost{Host: h, ACME: true} }

type acmeFixture struct {
	acme   *ACME
	ca     *fakeCA
	cache  autocert.Cache
	table  *liveTable
	leader atomic.Bool
	logs   *observer.ObservedLogs
	reg    *prometheus.Registry
}

func newACMEFixture(t testing.TB, leader bool, hosts ...*route.TLSHost) *acmeFixture {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	f := &acmeFixture{ca: newFakeCA(t), cache: autocert.DirCache(t.TempDir()), table: newLiveTable(hosts...), logs: logs, reg: prometheus.NewRegistry()}
	f.leader.Store(leader)
	a, err := NewACME(ACMEOptions{
		DirectoryURL: f.ca.URL + "/directory",
		Cache:        f.cache,
		Table:        f.table.get,
		CanOrder:     f.leader.Load,
		Logger:       zap.New(core),
		Registry:     f.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.acme = a
	return f
}

func TestHostPolicy(t *testing.T) {
	t.Parallel()
	f := newACMEFixture(t, true,
		acmeHost("a.example.com"),
		acmeHost("*.w.example.com"),
		&route.TLSHost{Host: "plain.example.com"},
		&route.TLSHost{Host: "*.example.com"},
	)
	cases := []struct {
		host string
		ok   bool
	}{
		{"a.example.com", true},
		{"a.example.com:80", true}, // http-01 hands over the Host header with its port
		{"A.Example.com.", true},
		{"b.example.com", false},     // only a non-ACME wildcard covers it
		{"x.w.example.com", false},   // covered by an ACME wildcard: not orderable
		{"*.w.example.com", false},   // wildcards need dns-01
		{"plain.example.com", false}, // a Secret, not ACME
		{"unknown.example.org", false},
		{"", false},
		{"[::1]:80", false},
	}
	for _, tc := range cases {
		err := f.acme.hostPolicy(context.Background(), tc.host)
		if (err == nil) != tc.ok {
			t.Errorf("hostPolicy(%q) = %v, want allowed %v", tc.host, err, tc.ok)
		}
	}
}

// TestACMEGate checks that a replica that may not order never reaches the
// CA, whichever way autocert is driven.
func TestACMEGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newACMEFixture(t, false, acmeHost("a.example.com"), acmeHost("b.example.com"))

	// The transport itself.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.ca.URL+"/directory", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := f.acme.m.Client.HTTPClient.Do(req); !errors.Is(err, ErrNotLeader) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("transport: error %v, want ErrNotLeader", err)
	}

	// The cache refuses a new account key, which would replace the
	// leader's.
	if err := f.acme.m.Cache.Put(ctx, "acme_account+key", []byte("key")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("account key put: error %v, want ErrNotLeader", err)
	}

	// autocert asked directly for a host it has no certificate for, with
	// the leader's account key already in the cache: it tries to order,
	// and the gate stops it.
	if err := f.cache.Put(ctx, "acme_account+key", keyPEM(t, newKey(t, "ecdsa"), "sec1")); err != nil {
		t.Fatal(err)
	}
	_, err = f.acme.m.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "a.example.com", CipherSuites: ecdsaSuites})
	if !errors.Is(err, ErrNotLeader) {
		t.Errorf("autocert order: error %v, want ErrNotLeader", err)
	}

	// Sync waits for the leader.
	f.acme.Sync(ctx)
	f.acme.wg.Wait()
	if n := f.ca.requests.Load(); n != 0 {
		t.Errorf("the CA got %d requests from a replica that may not order", n)
	}
	if n := f.logs.FilterMessage("waiting for the leader to store the acme certificate").Len(); n != 2 {
		t.Errorf("logged %d waits, want 2 (one per host)", n)
	}
	if _, err := f.acme.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "b.example.com"}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("GetCertificate: error %v, want ErrNoCertificate", err)
	}

	// The same issuer, once leader, does reach the CA.
	f.leader.Store(true)
	_, err = f.acme.obtainCert(ctx, "b.example.com")
	if err == nil {
		t.Fatal("order against a CA that answers 404 succeeded")
	}
	if f.ca.requests.Load() == 0 {
		t.Errorf("the leader did not reach the CA: %v", err)
	}
}

func TestACMELeaderOrderFailure(t *testing.T) {
	t.Parallel()
	f := newACMEFixture(t, true, acmeHost("a.example.com"))
	var delays []time.Duration
	var mu sync.Mutex
	f.acme.afterFunc = func(d time.Duration, _ func()) stopper {
		mu.Lock()
		defer mu.Unlock()
		delays = append(delays, d)
		return time.NewTimer(time.Hour)
	}
	f.acme.Sync(context.Background())
	f.acme.wg.Wait()
	if f.ca.requests.Load() == 0 {
		t.Error("the leader did not reach the CA")
	}
	entries := f.logs.FilterMessage("acme certificate order failed").AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("logged %d failures, want 1", len(entries))
	}
	if got := entries[0].ContextMap()["host"]; got != "a.example.com" {
		t.Errorf("failure logged for host %v", got)
	}
	if !slices.Equal(delays, []time.Duration{10 * time.Second}) {
		t.Errorf("retries scheduled after %v, want [10s]", delays)
	}
	want := `
# HELP postern_tls_acme_orders_total Attempts to obtain an ACME certificate (from the shared cache or the CA), by result (ok or error).
# TYPE postern_tls_acme_orders_total counter
postern_tls_acme_orders_total{result="error"} 1
postern_tls_acme_orders_total{result="ok"} 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// TestACMEFromSharedCache checks that a replica that may not order serves
// the certificate the leader stored in the shared cache, without talking
// to the CA, and reports it for the expiry metric.
func TestACMEFromSharedCache(t *testing.T) {
	t.Parallel()
	f := newACMEFixture(t, false, acmeHost("acme.example.org"), acmeHost("other.example.org"))
	root := newTestCA(t, "root", nil)
	issued := root.valid(t, "ecdsa", "acme.example.org")
	if err := f.cache.Put(context.Background(), "acme.example.org", issued.autocertPEM(t)); err != nil {
		t.Fatal(err)
	}
	f.acme.Sync(context.Background())
	f.acme.wg.Wait()

	got, err := f.acme.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "acme.example.org"})
	if err != nil || !sameLeaf(got, issued.cert) {
		t.Fatalf("GetCertificate: %v, %v", names(got), err)
	}
	if want := []ACMECertificate{{Host: "acme.example.org", NotAfter: issued.cert.NotAfter}}; !slices.Equal(f.acme.Certificates(), want) {
		t.Errorf("Certificates() = %v, want %v", f.acme.Certificates(), want)
	}
	if n := f.ca.requests.Load(); n != 0 {
		t.Errorf("the CA got %d requests", n)
	}

	def, err := SelfSigned(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := NewStore(StoreOptions{Table: f.table.get, Default: def, ACME: f.acme, Registry: reg})
	for _, sni := range []string{"acme.example.org", "ACME.example.org"} {
		if c, err := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: sni}); err != nil || !sameLeaf(c, issued.cert) {
			t.Errorf("store served %v, %v for %s", names(c), err, sni)
		}
	}
	if c, _ := s.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "other.example.org"}); c != def.Cert {
		t.Errorf("acme host without certificate: served %v, want the default", names(c))
	}
	if !s.Covers("acme.example.org", "ACME.example.org:443") || s.Covers("acme.example.org", "other.example.org") {
		t.Error("Covers is wrong for acme certificates")
	}
	want := fmt.Sprintf(`
# HELP postern_tls_certificate_expiry_timestamp_seconds When a served certificate expires, in seconds since the Unix epoch. Secret certificates (and the default one) are labelled by secret, ACME certificates by host.
# TYPE postern_tls_certificate_expiry_timestamp_seconds gauge
postern_tls_certificate_expiry_timestamp_seconds{host="",secret="self-signed"} %d
postern_tls_certificate_expiry_timestamp_seconds{host="acme.example.org",secret=""} %d
`, def.NotAfter.Unix(), issued.cert.NotAfter.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "postern_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}

	// The host leaves the table: it is forgotten.
	f.table.set(acmeHost("other.example.org"))
	f.acme.Sync(context.Background())
	f.acme.wg.Wait()
	if _, err := f.acme.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "acme.example.org"}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("removed host: error %v, want ErrNoCertificate", err)
	}
	if c := f.acme.Certificates(); len(c) != 0 {
		t.Errorf("removed host still reported: %v", c)
	}
}

func TestACMECheckCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := newTestCA(t, "root", nil)
	now := time.Now()
	cases := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"valid", root.valid(t, "ecdsa", "a.example.com").autocertPEM(t), true},
		{"missing", nil, false},
		{"garbage", []byte("garbage"), false},
		{"other host", root.valid(t, "ecdsa", "b.example.com").autocertPEM(t), false},
		{"expired", root.issue(t, "ecdsa", []string{"a.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour)).autocertPEM(t), false},
		{"rsa", func() []byte {
			l := root.valid(t, "rsa", "a.example.com")
			return append(keyPEM(t, l.key, "pkcs1"), certsPEM(l.chain...)...)
		}(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newACMEFixture(t, false, acmeHost("a.example.com"))
			if tc.data != nil {
				if err := f.cache.Put(ctx, "a.example.com", tc.data); err != nil {
					t.Fatal(err)
				}
			}
			err := f.acme.checkCached(ctx, "a.example.com")
			if (err == nil) != tc.ok {
				t.Errorf("checkCached = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, errNotCached) {
				t.Errorf("error %v is not errNotCached", err)
			}
		})
	}
}

// TestHTTPHandler checks http-01: tokens come from the shared cache, the
// Host header's port is ignored, and other hosts are refused.
func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	f := newACMEFixture(t, false, acmeHost("a.example.com"))
	if err := f.cache.Put(context.Background(), "tok3n+http-01", []byte("tok3n.thumbprint")); err != nil {
		t.Fatal(err)
	}
	h := f.acme.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "fallback")
	}))
	cases := []struct {
		host, path string
		code       int
		body       string
	}{
		{"a.example.com:8080", "/.well-known/acme-challenge/tok3n", http.StatusOK, "tok3n.thumbprint"},
		{"a.example.com", "/.well-known/acme-challenge/tok3n", http.StatusOK, "tok3n.thumbprint"},
		{"a.example.com", "/.well-known/acme-challenge/other", http.StatusNotFound, ""},
		{"b.example.com:8080", "/.well-known/acme-challenge/tok3n", http.StatusForbidden, ""},
		{"b.example.com", "/index.html", http.StatusOK, "fallback"},
	}
	for _, tc := range cases {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+tc.host+tc.path, http.NoBody)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || (tc.body != "" && rec.Body.String() != tc.body) {
			t.Errorf("GET %s%s = %d %q, want %d %q", tc.host, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}

func TestNewACMEOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := newTestCA(t, "root", nil)
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, certsPEM(root.cert), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	cache := autocert.DirCache(dir)
	table := route.Empty
	cases := []struct {
		name    string
		opts    ACMEOptions
		wantErr string
	}{
		{"defaults", ACMEOptions{Cache: cache, Table: table}, ""},
		{"ca bundle", ACMEOptions{Cache: cache, Table: table, CABundle: bundle, DirectoryURL: "https://127.0.0.1:14000/dir"}, ""},
		{"no cache", ACMEOptions{Table: table}, "no cache given"},
		{"no table", ACMEOptions{Cache: cache}, "no table given"},
		{"bad directory", ACMEOptions{Cache: cache, Table: table, DirectoryURL: "ftp://x"}, "not an http(s) url"},
		{"missing ca bundle", ACMEOptions{Cache: cache, Table: table, CABundle: filepath.Join(dir, "nope.pem")}, "read ca bundle"},
		{"empty ca bundle", ACMEOptions{Cache: cache, Table: table, CABundle: empty}, "holds no PEM certificate"},
	}
	for _, tc := range cases {
		a, err := NewACME(tc.opts)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if want := cmpOr(tc.opts.DirectoryURL, DefaultDirectoryURL); a.m.Client.DirectoryURL != want {
				t.Errorf("%s: directory %q, want %q", tc.name, a.m.Client.DirectoryURL, want)
			}
			if a.m.RenewBefore != DefaultRenewBefore {
				t.Errorf("%s: RenewBefore %v", tc.name, a.m.RenewBefore)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// unreadyCache is a cache that cannot answer yet (a Secret cache whose
// informer has not listed): every Get fails with an error that is not
// autocert.ErrCacheMiss.
type unreadyCache struct{ autocert.Cache }

var errUnready = errors.New("cache not ready")

func (unreadyCache) Get(context.Context, string) ([]byte, error) { return nil, errUnready }

// A leader whose cache cannot be read yet orders nothing: the certificate
// may well be in it. This is what keeps a restart from ordering again
// while the Secret cache is still listing.
func TestACMELeaderWithUnreadyCache(t *testing.T) {
	t.Parallel()
	ca := newFakeCA(t)
	a, err := NewACME(ACMEOptions{
		DirectoryURL: ca.URL + "/directory",
		Cache:        unreadyCache{autocert.DirCache(t.TempDir())},
		Table:        newLiveTable(acmeHost("a.example.com")).get,
		CanOrder:     func() bool { return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	a.afterFunc = func(time.Duration, func()) stopper { return time.NewTimer(time.Hour) }
	a.Sync(context.Background())
	a.wg.Wait()
	if n := ca.requests.Load(); n != 0 {
		t.Errorf("the CA got %d requests while the cache could not be read", n)
	}
	if _, err := a.GetCertificate(&stdtls.ClientHelloInfo{ServerName: "a.example.com"}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("GetCertificate: error %v, want ErrNoCertificate", err)
	}
}
