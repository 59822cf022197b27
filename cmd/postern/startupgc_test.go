package main

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// gogc reads the GC percent in force without changing it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestStartupGC checks that the start-up GC target is in force until the
// first table is live and put back after it.
func TestStartupGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	done := startupGC()
	if got := gogc(); got != startupGCPercent {
		t.Fatalf("GC percent during start-up %d, want %d", got, startupGCPercent)
	}
	done()
	done() // once only
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := gogc()
		if got == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d after the first table, want 100 again", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
