package pipeline

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "", want: ""},
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: " 192.0.2.7 , 2001:db8::1", want: "192.0.2.7/32,2001:db8::1/128"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "proxy.example", wantErr: `trusted proxy "proxy.example"`},
		{in: "10.0.0.0/33", wantErr: `trusted proxy "10.0.0.0/33"`},
		{in: "fe80::1%eth0", wantErr: "zones are not allowed"},
		{in: "10.0.0.0/8/8", wantErr: "trusted proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTrustedProxies(strings.Split(tt.in, ","))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrustedProxiesContains(t *testing.T) {
	t.Parallel()
	tp, err := ParseTrustedProxies([]string{"10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.2.3.4": true, "11.0.0.1": false, "::ffff:10.2.3.4": true, "2001:db8::5": true,
		"2001:db9::5": false, "fe80::1%eth0": false, "192.0.2.1": true, "192.0.2.2": false,
	} {
		if got := tp.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	var none *TrustedProxies
	if none.Contains(netip.MustParseAddr("10.0.0.1")) || none.String() != "" {
		t.Error("a nil set trusts someone")
	}
}

func TestRealClient(t *testing.T) {
	t.Parallel()
	tp, err := ParseTrustedProxies([]string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		xff    []string
		realIP string
		want   string
	}{
		{name: "no header", want: "10.0.0.1"},
		{name: "one client", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "rightmost untrusted wins", xff: []string{"198.51.100.9, 203.0.113.7, 10.9.9.9"}, want: "203.0.113.7"},
		{name: "several fields", xff: []string{"198.51.100.9", "203.0.113.7,10.1.1.1", " 10.2.2.2 "}, want: "203.0.113.7"},
		{name: "all trusted: leftmost", xff: []string{"10.3.3.3, 10.2.2.2"}, want: "10.3.3.3"},
		{name: "with ports", xff: []string{"[2001:db9::7]:443, 10.2.2.2:80"}, want: "2001:db9::7"},
		{name: "IPv4-mapped", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
		{name: "garbage stops at the trusted one", xff: []string{"203.0.113.7, <script>, 10.2.2.2"}, want: "10.2.2.2"},
		{name: "garbage right away", xff: []string{"unknown"}, want: "10.0.0.1"},
		{name: "empty items", xff: []string{",, 203.0.113.7 ,,"}, want: "203.0.113.7"},
		{name: "zone refused", xff: []string{"fe80::1%eth0"}, want: "10.0.0.1"},
		{name: "X-Real-IP without X-Forwarded-For", realIP: "203.0.113.8", want: "203.0.113.8"},
		{name: "invalid X-Real-IP", realIP: "203.0.113.8, 1.2.3.4", want: "10.0.0.1"},
		{name: "X-Forwarded-For beats X-Real-IP", xff: []string{"203.0.113.7"}, realIP: "203.0.113.8", want: "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := &testHead{header: http.Header{}}
			if tt.realIP != "" {
				in.header.Set("X-Real-IP", tt.realIP)
			}
			if got := realClient(tp, tt.xff, in, netip.MustParseAddr("10.0.0.1")); got != tt.want {
				t.Errorf("realClient = %q, want %q", got, tt.want)
			}
		})
	}
}
