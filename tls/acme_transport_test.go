package tls

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestGateLogsValidationErrors(t *testing.T) {
	t.Parallel()
	const authz = `{"status":"invalid","identifier":{"type":"dns","value":"a.example.com"},
	"challenges":[{"type":"http-01","status":"invalid","error":{"type":"urn:ietf:params:acme:error:connection","detail":"connection refused"}},
	{"type":"tls-alpn-01","status":"pending"}]}`
	core, logs := observer.New(zapcore.DebugLevel)
	g := &gate{
		canOrder: func() bool { return true },
		log:      zap.New(core),
		base: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{
				StatusCode: http.StatusOK,
				Header:     http.Header{"Content-Type": []string{"application/json"}},
				Body:       io.NopCloser(strings.NewReader(authz)),
			}, nil
		}),
	}
	for range 2 {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "https://ca.test/authz/1", http.NoBody)
		resp, err := g.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != authz {
			t.Errorf("body changed: %q, %v", body, err)
		}
	}
	entries := logs.FilterMessage("acme validation failed").AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("%d validation logs, want 1 (once per authorization)", len(entries))
	}
	m := entries[0].ContextMap()
	if m["host"] != "a.example.com" || m["challenge"] != "http-01" || m["detail"] != "connection refused" {
		t.Errorf("logged %v", m)
	}
}
