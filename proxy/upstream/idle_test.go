package upstream

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// TestIdleTimerRunsOnlyWhileReading checks that a response the proxy is
// slow to read (a slow client) is not cut: only the endpoint's silence
// counts.
func TestIdleTimerRunsOnlyWhileReading(t *testing.T) {
	t.Parallel()
	b := &idleBody{ReadCloser: io.NopCloser(strings.NewReader("abc")), timeout: 5 * time.Millisecond, c: New(Options{}), backend: &route.Backend{}}
	p := make([]byte, 1)
	for i := range 3 {
		if n, err := b.Read(p); n != 1 || err != nil {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		time.Sleep(20 * time.Millisecond) // not reading: no timer runs
	}
	if _, err := b.Read(p); !errors.Is(err, io.EOF) {
		t.Fatalf("last read: %v, want EOF", err)
	}
	if b.fired.Load() {
		t.Error("the idle timer fired while nobody was reading")
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
}
