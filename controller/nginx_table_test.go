package controller

import (
	"strings"
	"testing"
)

// ingressNginxRegistry is every annotation name of ingress-nginx
// v1.15.1's parser registry, aliases included (136 names and 2 aliases;
// reference Appendix A).
const ingressNginxRegistry = `
	affinity affinity-canary-behavior affinity-mode allowlist-source-range app-root
	auth-always-set-cookie auth-cache-duration auth-cache-key auth-keepalive auth-keepalive-requests
	auth-keepalive-share-vars auth-keepalive-timeout auth-method auth-proxy-set-headers auth-realm
	auth-request-redirect auth-response-headers auth-secret auth-secret-type auth-signin
	auth-signin-redirect-param auth-snippet auth-tls-error-page auth-tls-match-cn
	auth-tls-pass-certificate-to-upstream auth-tls-secret auth-tls-verify-client auth-tls-verify-depth
	auth-type auth-url backend-protocol canary canary-by-cookie canary-by-header
	canary-by-header-pattern canary-by-header-value canary-weight canary-weight-total
	client-body-buffer-size configuration-snippet connection-proxy-header cors-allow-credentials
	cors-allow-headers cors-allow-methods cors-allow-origin cors-expose-headers cors-max-age
	custom-headers custom-http-errors default-backend denylist-source-range
	disable-proxy-intercept-errors enable-access-log enable-cors enable-global-auth enable-modsecurity
	enable-opentelemetry enable-owasp-core-rules enable-rewrite-log fastcgi-index
	fastcgi-params-configmap force-ssl-redirect from-to-www-redirect http2-push-preload limit-allowlist
	limit-burst-multiplier limit-connections limit-rate limit-rate-after limit-rpm limit-rps
	limit-whitelist load-balance mirror-host mirror-request-body mirror-target modsecurity-snippet
	modsecurity-transaction-id opentelemetry-operation-name opentelemetry-trust-incoming-span
	permanent-redirect permanent-redirect-code preserve-trailing-slash proxy-body-size
	proxy-buffer-size proxy-buffering proxy-buffers-number proxy-busy-buffers-size
	proxy-connect-timeout proxy-cookie-domain proxy-cookie-path proxy-http-version
	proxy-max-temp-file-size proxy-next-upstream proxy-next-upstream-timeout proxy-next-upstream-tries
	proxy-read-timeout proxy-redirect-from proxy-redirect-to proxy-request-buffering proxy-send-timeout
	proxy-ssl-ciphers proxy-ssl-name proxy-ssl-protocols proxy-ssl-secret proxy-ssl-server-name
	proxy-ssl-verify proxy-ssl-verify-depth relative-redirects rewrite-target satisfy server-alias
	server-snippet service-upstream session-cookie-change-on-failure
	session-cookie-conditional-samesite-none session-cookie-domain session-cookie-expires
	session-cookie-max-age session-cookie-name session-cookie-path session-cookie-samesite
	session-cookie-secure ssl-ciphers ssl-passthrough ssl-prefer-server-ciphers ssl-redirect
	stream-snippet temporal-redirect temporal-redirect-code upstream-hash-by upstream-hash-by-subset
	upstream-hash-by-subset-size upstream-vhost use-port-in-redirects use-regex whitelist-source-range
	x-forwarded-prefix
`

// TestNginxTableCoversRegistry checks that the annotation table has one
// row for each annotation ingress-nginx knows, and none it does not.
func TestNginxTableCoversRegistry(t *testing.T) {
	t.Parallel()
	want := strings.Fields(ingressNginxRegistry)
	if len(want) != 138 {
		t.Fatalf("the registry lists %d names, want 138", len(want))
	}
	for _, n := range want {
		if nginxByName[n] == nil {
			t.Errorf("annotation %s has no row", n)
		}
	}
	known := make(map[string]bool, len(want))
	for _, n := range want {
		known[n] = true
	}
	seen := make(map[string]bool)
	for _, r := range nginxTable {
		if !known[r.Name] || (r.Alias != "" && !known[r.Alias]) {
			t.Errorf("row %s (alias %q) is not an ingress-nginx annotation", r.Name, r.Alias)
		}
		if seen[r.Name] {
			t.Errorf("annotation %s has two rows", r.Name)
		}
		seen[r.Name] = true
		switch r.Status {
		case NginxSupported, NginxPartial:
			if r.read == nil && !strings.HasPrefix(r.Note, noteReadWithGroup) {
				t.Errorf("%s is %s but nothing reads it", r.Name, r.Status)
			}
		case NginxIgnored, NginxUnsupported:
			if r.read != nil {
				t.Errorf("%s is %s but has a read function", r.Name, r.Status)
			}
		default:
			t.Errorf("%s has status %q", r.Name, r.Status)
		}
		if (r.Status == NginxPartial || r.Status == NginxIgnored || r.Status == NginxUnsupported) && r.Note == "" {
			t.Errorf("%s is %s without a note saying why", r.Name, r.Status)
		}
		if isSnippet(r.Name) && r.Status != NginxUnsupported {
			t.Errorf("snippet %s is %s", r.Name, r.Status)
		}
	}
	if got := len(NginxAnnotations()); got != 136 {
		t.Errorf("NginxAnnotations has %d rows, want 136", got)
	}
}

// TestNginxValues checks the value syntax of ingress-nginx's numbers and
// sizes, which differ from the postern.dev annotations': timeouts are
// whole seconds without a unit, sizes may end in b.
func TestNginxValues(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		v    string
		want int64 // -1: invalid
	}{{"8m", 8 << 20}, {"8M", 8 << 20}, {"100b", 100}, {"1K", 1024}, {"0", 0}, {"15r", -1}, {"b", -1}, {"1.5m", -1}} {
		got, err := parseNginxSize(tt.v)
		if (err != nil) != (tt.want < 0) || (err == nil && got != tt.want) {
			t.Errorf("parseNginxSize(%q) = %d, %v; want %d", tt.v, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		v    string
		want int64 // seconds, -1: invalid
	}{{"60", 60}, {"3600", 3600}, {"60s", -1}, {"0", -1}, {"-5", -1}, {"50k", -1}, {"86401", -1}} {
		got, err := parseSeconds(tt.v)
		if (err != nil) != (tt.want < 0) || (err == nil && int64(got)/1e9 != tt.want) {
			t.Errorf("parseSeconds(%q) = %v, %v; want %ds", tt.v, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		tries string
		want  int
	}{{"1", -1}, {"2", 1}, {"3", 2}, {"6", 5}, {"7", 5}, {"0", 5}} {
		var cfg ingressConfig
		n := &nginxRead{cfg: &cfg}
		if err := readProxyNextUpstreamTries(tt.tries, n); err != nil || cfg.policy.Retries != tt.want {
			t.Errorf("proxy-next-upstream-tries %s: retries %d, %v; want %d", tt.tries, cfg.policy.Retries, err, tt.want)
		}
	}
}

// TestNginxRedirectValues: the URLs permanent-redirect and
// temporal-redirect take (reference 2.2), and app-root's paths.
func TestNginxRedirectValues(t *testing.T) {
	urls := []struct {
		v      string
		pathOK bool
		ok     bool
	}{
		{"https://new.example.com", false, true},
		{"HTTP://new.example.com/x", false, true},
		{"https://new.example.com$request_uri", true, true},
		{"$scheme://new.example.com$request_uri", false, true},
		{"/new-location", true, true},
		{"/new-location", false, false},
		{"ftp://files.example.com", true, false},
		{"new.example.com", true, false},
		{"https://x.example.com/$server_name", true, false},
	}
	for _, c := range urls {
		if _, err := parseRedirectURL(c.v, c.pathOK); (err == nil) != c.ok {
			t.Errorf("parseRedirectURL(%q, %v) = %v, want ok %v", c.v, c.pathOK, err, c.ok)
		}
	}
	roots := map[string]bool{"/foo": true, "/": true, "foo": false, "https://x.example.com/": false, "//x.example.com": false, "/a b": false, "/$uri": false}
	for v, ok := range roots {
		if _, err := parseAppRoot(v); (err == nil) != ok {
			t.Errorf("parseAppRoot(%q) = %v, want ok %v", v, err, ok)
		}
	}
	for v, ok := range map[string]bool{"300": true, "308": true, "301": true, "299": false, "309": false, "x": false} {
		if err := checkRedirectCode(v, 308); (err == nil) != ok {
			t.Errorf("checkRedirectCode(%q, 308) = %v, want ok %v", v, err, ok)
		}
	}
}
