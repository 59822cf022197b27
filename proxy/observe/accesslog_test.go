package observe

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func closeLog(t *testing.T, a *AccessLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestAccessLogSampleRate(t *testing.T) {
	t.Parallel()
	quarter := NewAccessLog(AccessLogOptions{Sample: 0.25})
	closeLog(t, quarter)
	n := 0
	for range 20000 {
		if quarter.sampled() {
			n++
		}
	}
	if n < 4000 || n > 6000 {
		t.Errorf("sample 0.25 logged %d of 20000", n)
	}
}

func TestAccessLogAfterCloseDrops(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer // read after Close, which waits for the writer
	al := NewAccessLog(AccessLogOptions{Output: &out, Sample: 1, Format: "console"})
	s := NewSink(nil, al)
	rec := &Record{Start: time.Now(), ID: "before-close", Method: "GET", Host: "a.test", Path: "/", Status: 200}
	s.Done(rec)
	closeLog(t, al)
	if !strings.Contains(out.String(), "before-close") || strings.HasPrefix(out.String(), "{") {
		t.Errorf("console line = %q, want the request ID, not JSON", out.String())
	}
	s.Done(rec)
	if got := al.Dropped(); got != 1 {
		t.Errorf("dropped after Close = %d, want 1", got)
	}
}
