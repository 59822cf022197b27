package route

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRetryBudget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ retries, want int }{
		{-1, 0}, {-7, 0}, {0, DefaultRetries}, {1, 1}, {3, 3}, {MaxRetries, MaxRetries}, {MaxRetries + 1, MaxRetries},
	} {
		if got := (&Policy{Retries: tt.retries}).RetryBudget(); got != tt.want {
			t.Errorf("RetryBudget with Retries %d = %d, want %d", tt.retries, got, tt.want)
		}
	}
	if got := (*Policy)(nil).RetryBudget(); got != DefaultRetries {
		t.Errorf("RetryBudget of no policy = %d, want %d", got, DefaultRetries)
	}
}

func TestRouteJSON(t *testing.T) {
	t.Parallel()
	be := &Backend{Key: "ns/web:80", ConnectTimeout: Duration(2 * time.Second)}
	in := Route{
		Match:    Match{PathType: PathPrefix, Path: "/", Method: "GET", Headers: []FieldMatch{ExactField("X-Env", "canary")}},
		Policy:   &Policy{ReadTimeout: Duration(90 * time.Second), MaxBodySize: 8 << 20, Retries: -1},
		Backends: Single(be),
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"pathType":"Prefix","path":"/","method":"GET","headers":[{"name":"X-Env","type":"Exact","value":"canary"}],` +
		`"policy":{"retries":-1,"readTimeout":"1m30s","maxBodySize":8388608},` +
		`"backends":[{"backend":{"key":"ns/web:80","namespace":"","service":"","port":"","endpoints":null,"connectTimeout":"2s"},"weight":1}],` +
		`"source":{"name":""}}`
	if string(data) != want {
		t.Errorf("JSON:\n got %s\nwant %s", data, want)
	}
	var out Route
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if p := out.Policy; p == nil || p.ReadTimeout != in.Policy.ReadTimeout || p.IdleTimeout != 0 || p.MaxBodySize != in.Policy.MaxBodySize || p.Retries != -1 {
		t.Errorf("round trip policy: %+v, want %+v", out.Policy, in.Policy)
	}
	if out.First() == nil || out.First().ConnectTimeout != be.ConnectTimeout || out.Headers[0] != in.Headers[0] {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"connectTimeout":"soon"}`), new(Backend)); err == nil {
		t.Error("an invalid duration was accepted")
	}
}
