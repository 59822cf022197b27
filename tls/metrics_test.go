package tls

import (
	stdtls "crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/postern-dev/postern/proxy/route"
)

func TestExpiryMetric(t *testing.T) {
	t.Parallel()
	root := newTestCA(t, "root", nil)
	def := root.valid(t, "ecdsa", "default.invalid").routeCert(t, "ingress", "default-cert")
	shared := root.valid(t, "ecdsa", "a.example.com", "b.example.com").routeCert(t, "ns", "shared")
	own := root.valid(t, "rsa", "c.example.com").routeCert(t, "other", "c")
	// The same Secret parsed twice (two Ingresses) is one series.
	again := *shared

	live := newLiveTable(
		&route.TLSHost{Host: "a.example.com", Certificate: shared},
		&route.TLSHost{Host: "b.example.com", Certificate: &again},
		&route.TLSHost{Host: "c.example.com", Certificate: own},
		&route.TLSHost{Host: "broken.example.com"},
		&route.TLSHost{Host: "default.example.com", Certificate: def},
	)
	reg := prometheus.NewRegistry()
	NewStore(StoreOptions{Table: live.get, Default: def, Registry: reg})

	const head = `
# HELP postern_tls_certificate_expiry_timestamp_seconds When a served certificate expires, in seconds since the Unix epoch. Secret certificates (and the default one) are labelled by secret, ACME certificates by host.
# TYPE postern_tls_certificate_expiry_timestamp_seconds gauge
`
	want := head + fmt.Sprintf(`postern_tls_certificate_expiry_timestamp_seconds{host="",secret="ingress/default-cert"} %d
postern_tls_certificate_expiry_timestamp_seconds{host="",secret="ns/shared"} %d
postern_tls_certificate_expiry_timestamp_seconds{host="",secret="other/c"} %d
`, def.NotAfter.Unix(), shared.NotAfter.Unix(), own.NotAfter.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "postern_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}

	// Computed at scrape time: a table swap shows at once.
	live.set(&route.TLSHost{Host: "c.example.com", Certificate: own})
	want = head + fmt.Sprintf(`postern_tls_certificate_expiry_timestamp_seconds{host="",secret="ingress/default-cert"} %d
postern_tls_certificate_expiry_timestamp_seconds{host="",secret="other/c"} %d
`, def.NotAfter.Unix(), own.NotAfter.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "postern_tls_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

// TestStoreRegistersTwice checks that a second store on the same registry
// works without metrics and says why.
func TestStoreRegistersTwice(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	first := NewStore(StoreOptions{Registry: reg})
	core, logs := observer.New(zapcore.WarnLevel)
	second := NewStore(StoreOptions{Registry: reg, Logger: zap.New(core)})
	second.ObserveHandshake(stdtls.ConnectionState{Version: stdtls.VersionTLS13}, nil)
	first.ObserveHandshake(stdtls.ConnectionState{Version: stdtls.VersionTLS13}, nil)
	if n := logs.FilterMessage("register tls metrics").Len(); n != 2 {
		t.Errorf("%d registration warnings, want 2 (counter and collector)", n)
	}
	if got := testutil.ToFloat64(first.handshakes[0][1]); got != 1 {
		t.Errorf("first store counted %v handshakes, want 1", got)
	}
}
