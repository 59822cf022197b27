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
		if got := (&Backend{Retries: tt.retries}).RetryBudget(); got != tt.want {
			t.Errorf("RetryBudget with Retries %d = %d, want %d", tt.retries, got, tt.want)
		}
	}
}

func TestBackendSettingsJSON(t *testing.T) {
	t.Parallel()
	in := Backend{Key: "ns/web:80", ConnectTimeout: Duration(2 * time.Second), ReadTimeout: Duration(90 * time.Second), MaxBodySize: 8 << 20, Retries: -1}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"key":"ns/web:80","namespace":"","service":"","port":"","endpoints":null,"retries":-1,"connectTimeout":"2s","readTimeout":"1m30s","maxBodySize":8388608}`
	if string(data) != want {
		t.Errorf("JSON:\n got %s\nwant %s", data, want)
	}
	var out Backend
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.ConnectTimeout != in.ConnectTimeout || out.ReadTimeout != in.ReadTimeout || out.IdleTimeout != 0 || out.MaxBodySize != in.MaxBodySize || out.Retries != -1 {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"readTimeout":"soon"}`), &out); err == nil {
		t.Error("an invalid duration was accepted")
	}
}
