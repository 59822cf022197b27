package pipeline

import (
	"regexp"
	"strings"
	"testing"
)

// generatedID matches the request IDs Postern makes.
var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"a": true, "0123456789abcdef": true, "!~": true, strings.Repeat("z", 200): true,
		"": false, " ": false, "a b": false, "a\tb": false, "a\nb": false, "\x7f": false, "\u00e9": false,
		strings.Repeat("z", 201): false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %t, want %t", id, got, want)
		}
	}
}

func TestNewRequestIDIsUnique(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 10000 {
		id := newRequestID()
		if !generatedID.MatchString(id) || !validRequestID(id) {
			t.Fatalf("newRequestID() = %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("newRequestID() repeated %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = newRequestID()
	}
}
