package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := parseFlags([]string{"--manifests", dir, "--http-addr", "127.0.0.1:1"},
		env(map[string]string{"POSTERN_HTTP_ADDR": "ignored:2", "POSTERN_INGRESS_CLASS": "edge", "POSTERN_SHUTDOWN_GRACE": "3s"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.httpAddr != "127.0.0.1:1" {
		t.Errorf("a flag on the command line must beat the environment: http-addr = %q", c.httpAddr)
	}
	if c.ingressClass != "edge" || c.shutdownGrace != 3*time.Second {
		t.Errorf("environment not applied: class %q grace %s", c.ingressClass, c.shutdownGrace)
	}
	if !c.accessLog || c.accessLogSample != 1 || c.enablePprof {
		t.Errorf("defaults: access log %t sample %g pprof %t, want true 1 false", c.accessLog, c.accessLogSample, c.enablePprof)
	}
	if c, err := parseFlags([]string{"--access-log-sample", "0", "--enable-pprof"}, env(map[string]string{"POSTERN_ACCESS_LOG": "false"}), nil); err != nil ||
		c.accessLog || c.accessLogSample != 0 || !c.enablePprof {
		t.Errorf("access log flags: %+v, %v", c, err)
	}
	if c.metricsAddr != ":10254" || c.controllerClass != "postern.dev/ingress-controller" {
		t.Errorf("defaults: metrics %q controller %q", c.metricsAddr, c.controllerClass)
	}
	c, err = parseFlags([]string{"--watch-namespace", "a, b,,c", "--publish-status-address", "192.0.2.1"}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.watchNamespaces, "|") != "a|b|c" || len(c.publishAddrs) != 1 {
		t.Errorf("lists: %q %q", c.watchNamespaces, c.publishAddrs)
	}
}

func TestTrustAndProxyProtocolFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantTrust string
		wantProxy bool
	}{
		{name: "defaults", wantTrust: "", wantProxy: false},
		{name: "flags", args: []string{"--trusted-proxies", "10.1.2.3/8, 192.0.2.7,,2001:db8::/32", "--proxy-protocol"},
			wantTrust: "10.0.0.0/8,192.0.2.7/32,2001:db8::/32", wantProxy: true},
		{name: "environment", env: map[string]string{"POSTERN_TRUSTED_PROXIES": "::ffff:10.0.0.0/104", "POSTERN_PROXY_PROTOCOL": "true"},
			wantTrust: "10.0.0.0/8", wantProxy: true},
		{name: "flag beats environment", args: []string{"--trusted-proxies", "192.0.2.0/24", "--proxy-protocol=false"},
			env: map[string]string{"POSTERN_TRUSTED_PROXIES": "10.0.0.0/8", "POSTERN_PROXY_PROTOCOL": "true"}, wantTrust: "192.0.2.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseFlags(tt.args, env(tt.env), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.trustedProxies.String(); got != tt.wantTrust || c.proxyProtocol != tt.wantProxy {
				t.Errorf("trusted proxies %q, proxy protocol %v; want %q, %v", got, c.proxyProtocol, tt.wantTrust, tt.wantProxy)
			}
		})
	}
}

func TestBadFlagsAreOneClearLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--no-such-flag"}, nil, "flag provided but not defined: -no-such-flag"},
		{[]string{"--shutdown-grace", "soon"}, nil, `invalid value "soon" for flag -shutdown-grace`},
		{[]string{"--shutdown-delay", "-1s"}, nil, "invalid value -1s for --shutdown-delay: want zero or a positive duration"},
		{[]string{"--log-level", "loud"}, nil, `invalid value "loud" for flag -log-level`},
		{[]string{"--log-format", "xml"}, nil, `invalid value "xml" for --log-format`},
		{[]string{"--max-header-bytes", "10"}, nil, "--max-header-bytes: want at least 1024"},
		{[]string{"--manifests", dir + "/missing"}, nil, "--manifests: stat"},
		{[]string{"--publish-service", "nonamespace"}, nil, "want namespace/name"},
		{[]string{"--publish-service", "a/b", "--publish-status-address", "1.2.3.4"}, nil, "exclusive"},
		{[]string{"--manifests", dir, "--kubeconfig", "x"}, nil, "exclusive"},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
		{[]string{"--gateway-addresses", "203.0.113.7"}, nil, "want a network like 203.0.113.0/24"},
		{[]string{"--gateway-addresses", "203.0.113.7/24"}, nil, "has host bits set; the network is 203.0.113.0/24"},
		{[]string{"--gateway-addresses", "203.0.113.7/32"}, nil, "has no address for a Gateway"},
		{nil, map[string]string{"POSTERN_IDLE_TIMEOUT": "forever"}, `invalid value "forever" for POSTERN_IDLE_TIMEOUT`},
		{[]string{"--upstream-response-timeout", "0s"}, nil, "want a positive duration"},
		{[]string{"--access-log-sample", "1.5"}, nil, "invalid value 1.5 for --access-log-sample: want a fraction from 0 to 1"},
		{[]string{"--access-log-sample", "-0.1"}, nil, "invalid value -0.1 for --access-log-sample"},
		{[]string{"--access-log-sample", "NaN"}, nil, "invalid value NaN for --access-log-sample"},
		{[]string{"--access-log-sample", "half"}, nil, `invalid value "half" for flag -access-log-sample`},
		{nil, map[string]string{"POSTERN_ACCESS_LOG_SAMPLE": "2"}, "invalid value 2 for --access-log-sample"},
		{[]string{"--annotations-prefix", ""}, nil, `invalid value "" for --annotations-prefix: want a DNS name like nginx.ingress.kubernetes.io`},
		{[]string{"--annotations-prefix", "a/b"}, nil, `invalid value "a/b" for --annotations-prefix`},
		{[]string{"--limit-status-code", "200"}, nil, `invalid value 200 for --limit-status-code: want a status from 400 to 599`},
		{[]string{"--access-log=maybe"}, nil, `invalid boolean value "maybe" for -access-log`},
		{[]string{"--trusted-proxies", "10.0.0.0/8,proxy.example"}, nil, `invalid value "10.0.0.0/8,proxy.example" for flag -trusted-proxies: trusted proxy "proxy.example"`},
		{[]string{"--trusted-proxies", "10.0.0.0/33"}, nil, `for flag -trusted-proxies: trusted proxy "10.0.0.0/33"`},
		{[]string{"--trusted-proxies", "fe80::1%eth0"}, nil, "zones are not allowed"},
		{[]string{"--proxy-protocol-from", "10.0.0.0/8"}, nil, "--proxy-protocol-from needs --proxy-protocol"},
		{[]string{"--proxy-protocol", "--proxy-protocol-from", "lb.example"}, nil, `invalid value "lb.example" for flag -proxy-protocol-from`},
		{nil, map[string]string{"POSTERN_TRUSTED_PROXIES": "10.0.0.1/x"}, `invalid value "10.0.0.1/x" for POSTERN_TRUSTED_PROXIES`},
		{nil, map[string]string{"POSTERN_PROXY_PROTOCOL": "yes"}, `invalid value "yes" for POSTERN_PROXY_PROTOCOL`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			_, err := parseFlags(tt.args, env(tt.env), nil)
			if err == nil {
				t.Fatalf("parseFlags(%q) accepted it", tt.args)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, env(nil), &out)
	if !errors.Is(err, errHelp) || !strings.Contains(out.String(), "-manifests") || !strings.Contains(out.String(), "POSTERN_") {
		t.Errorf("--help: err %v, output %q", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"--version"}, env(nil), &out); err != nil || out.String() != "postern dev\n" {
		t.Errorf("--version: err %v, output %q", err, out.String())
	}
}

func TestProxyProtocolFromFlag(t *testing.T) {
	t.Parallel()
	c, err := parseFlags([]string{"--proxy-protocol", "--proxy-protocol-from", "10.1.2.3/8, 192.0.2.7"}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.proxyProtocolFrom.String(); got != "10.0.0.0/8,192.0.2.7/32" {
		t.Errorf("--proxy-protocol-from = %q, want 10.0.0.0/8,192.0.2.7/32", got)
	}
	c, err = parseFlags(nil, env(map[string]string{"POSTERN_PROXY_PROTOCOL": "true", "POSTERN_PROXY_PROTOCOL_FROM": "2001:db8::/32"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.proxyProtocolFrom.String(); got != "2001:db8::/32" {
		t.Errorf("POSTERN_PROXY_PROTOCOL_FROM = %q, want 2001:db8::/32", got)
	}
}
