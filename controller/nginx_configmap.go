package controller

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// nginxConfigRow is one key of ingress-nginx's controller ConfigMap
// (reference §6) and what Postern does instead: a flag, a per-Ingress
// annotation, nothing (not applicable), or nothing it can do.
type nginxConfigRow struct {
	// key is the ConfigMap key; "prefix*" or "*suffix" for a family of
	// keys. An exact key wins over a family.
	key    string
	status NginxStatus
	// flag is the Postern flag that does the same; empty: none.
	flag string
	note string
	// same, when set, reports whether a value asks for what Postern does
	// anyway (often ingress-nginx's default too), which is then reported
	// ignored: nothing to carry over.
	same func(v string) bool
}

// Notes shared by several ConfigMap rows.
const (
	noteNotApplicable = "not applicable: nginx internals"
	noteConfigSnippet = "nginx configuration, which Postern never runs; move what it does to Postern's flags or to annotations"
	noteHSTSParts     = "per Ingress, in the postern.dev/hsts annotation (\"max-age=N; includeSubDomains; preload\"); no global setting"
	noteRetries       = "per Ingress (the proxy-next-upstream annotations, postern.dev/retries); Postern retries only requests that never reached an endpoint, once by default"
	noteGlobalAccess  = "a global access rule Postern does not enforce"
	noteNoTracing     = "Postern exports no traces; trace headers pass through to the backends"
	noteFixedTLS      = "Postern's TLS is fixed: TLS 1.2 and 1.3, ECDHE with AES-GCM or ChaCha20"
	noteSame          = "Postern does the same without being told"
)

// Values of a row's same function.
func valueFalse(v string) bool {
	b, err := parseNginxBool(v)
	return err == nil && !b
}

func valueTrue(v string) bool {
	b, err := parseNginxBool(v)
	return err == nil && b
}

func valueEmpty(v string) bool { return v == "" }

// valueIs returns a same function for the one value want
// (case-insensitive).
func valueIs(want string) func(string) bool {
	return func(v string) bool { return strings.EqualFold(v, want) }
}

func cfgRow(key string, status NginxStatus, flag, note string, same func(string) bool) nginxConfigRow {
	return nginxConfigRow{key: key, status: status, flag: flag, note: note, same: same}
}

// notApplicable is a row of nginx's own tuning (reference §6.2).
func notApplicable(key string) nginxConfigRow {
	return nginxConfigRow{key: key, status: NginxIgnored, note: noteNotApplicable}
}

// nginxConfigTable is what Postern does with the keys of ingress-nginx's
// controller ConfigMap that matter (reference §6): §6.1 key by key, §6.2
// (nginx internals) not applicable, §6.3 (snippets) unsupported. A key not
// here is unknown.
var nginxConfigTable = []nginxConfigRow{
	// Client addresses and the proxies in front.
	cfgRow("use-forwarded-headers", NginxPartial, "--trusted-proxies", "list the proxies in front in --trusted-proxies: only their X-Forwarded-* headers are believed, where ingress-nginx believes every client's (proxy-real-ip-cidr 0.0.0.0/0); the Host sent to backends stays the request's", valueFalse),
	cfgRow("compute-full-forwarded-for", NginxPartial, "--trusted-proxies", "a trusted proxy's X-Forwarded-For is appended to, anyone else's replaced by the peer's address", valueTrue),
	cfgRow("enable-real-ip", NginxPartial, "--trusted-proxies", "from --trusted-proxies Postern believes X-Forwarded-Proto and -Host too, not only the client address", valueFalse),
	cfgRow("forwarded-for-header", NginxUnsupported, "", "Postern finds the client address in X-Forwarded-For only", valueIs("X-Forwarded-For")),
	cfgRow("proxy-real-ip-cidr", NginxSupported, "--trusted-proxies", "the same list; ingress-nginx's default 0.0.0.0/0 trusts every client, Postern's default no one", nil),
	cfgRow("use-proxy-protocol", NginxSupported, "--proxy-protocol", "and --proxy-protocol-from with the load balancers' addresses", valueFalse),

	// Redirects and HSTS.
	cfgRow("ssl-redirect", NginxPartial, "", "the hosts of spec.tls redirect to HTTPS by default; turn it off per Ingress (postern.dev/ssl-redirect: \"false\"), there is no global setting", valueTrue),
	cfgRow("force-ssl-redirect", NginxUnsupported, "", "no global setting; per Ingress, see the force-ssl-redirect annotation", valueFalse),
	cfgRow("http-redirect-code", NginxUnsupported, "", "Postern's redirect to HTTPS is always 308", valueIs("308")),
	cfgRow("no-tls-redirect-locations", NginxPartial, "", "Postern never redirects the http-01 challenges of the hosts it orders certificates for (postern.dev/acme); other paths are not exempted", nil),
	cfgRow("hsts", NginxPartial, "", "Postern sends Strict-Transport-Security only for Ingresses annotated postern.dev/hsts; ingress-nginx for every TLS host by default", valueFalse),
	cfgRow("hsts-max-age", NginxPartial, "", noteHSTSParts, nil),
	cfgRow("hsts-include-subdomains", NginxPartial, "", noteHSTSParts, nil),
	cfgRow("hsts-preload", NginxPartial, "", noteHSTSParts, nil),

	// Limits and timeouts.
	cfgRow("proxy-body-size", NginxPartial, "", "per Ingress only (the proxy-body-size annotation, postern.dev/max-body-size); Postern has no global limit, where ingress-nginx's default is 1m", valueIs("0")),
	cfgRow("proxy-connect-timeout", NginxSupported, "--upstream-connect-timeout", "a duration there (5s), whole seconds here", valueIs("5")),
	cfgRow("proxy-read-timeout", NginxPartial, "--upstream-response-timeout", "the flag bounds the wait for the response head; the wait between two reads of the body only per Ingress (the proxy-read-timeout annotation)", nil),
	cfgRow("proxy-send-timeout", NginxPartial, "", "Postern sets no timeout on sending a request to a backend", nil),
	cfgRow("proxy-next-upstream", NginxPartial, "", noteRetries, nil),
	cfgRow("proxy-next-upstream-tries", NginxPartial, "", noteRetries, nil),
	cfgRow("proxy-next-upstream-timeout", NginxIgnored, "", "retries are bounded by count and the connect timeout", nil),
	cfgRow("retry-non-idempotent", NginxPartial, "", "Postern retries a request that is not idempotent only when its body was not sent, or with an Idempotency-Key", valueFalse),
	cfgRow("client-header-buffer-size", NginxPartial, "--max-header-bytes", "the flag bounds the whole header block (431), 64 KiB by default", nil),
	cfgRow("large-client-header-buffers", NginxPartial, "--max-header-bytes", "the flag bounds the whole header block (431), 64 KiB by default", nil),
	cfgRow("client-header-timeout", NginxSupported, "--read-header-timeout", "a duration there (10s by default), whole seconds here", nil),
	cfgRow("client-body-timeout", NginxPartial, "", "Postern sets no timeout on reading a request body (uploads may be long)", nil),
	cfgRow("keep-alive", NginxPartial, "--idle-timeout", "a duration there (75s, as here); 0 (no keep-alive) is not possible", valueIs("75")),
	cfgRow("keep-alive-requests", NginxIgnored, "", "Postern does not cap the requests of a client connection", nil),
	cfgRow("upstream-keepalive-*", NginxIgnored, "", "Postern sizes and recycles its connection pools to backends itself", nil),
	cfgRow("proxy-buffering", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("proxy-request-buffering", NginxIgnored, "", "Postern streams request bodies as they come", nil),
	cfgRow("proxy-buffer-size", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("proxy-buffers-number", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("proxy-busy-buffers-size", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("proxy-max-temp-file-size", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("client-body-buffer-size", NginxIgnored, "", noteNginxTuning, nil),
	cfgRow("worker-shutdown-timeout", NginxSupported, "--shutdown-grace", "a duration there (25s by default, where ingress-nginx waits 240s)", nil),

	// Access control, errors, auth.
	cfgRow("whitelist-source-range", NginxUnsupported, "", noteGlobalAccess, valueEmpty),
	cfgRow("denylist-source-range", NginxUnsupported, "", noteGlobalAccess, valueEmpty),
	cfgRow("block-cidrs", NginxUnsupported, "", noteGlobalAccess, valueEmpty),
	cfgRow("block-user-agents", NginxUnsupported, "", noteGlobalAccess, valueEmpty),
	cfgRow("block-referers", NginxUnsupported, "", noteGlobalAccess, valueEmpty),
	cfgRow("global-auth-url", NginxSupported, "--global-auth-url", "every Ingress without an auth-url of its own, unless enable-global-auth: \"false\"", nil),
	cfgRow("global-auth-method", NginxSupported, "--global-auth-method", "the global auth request's method", nil),
	cfgRow("global-auth-signin", NginxSupported, "--global-auth-signin", "where a 401 of the global auth service sends the client", nil),
	cfgRow("global-auth-response-headers", NginxSupported, "--global-auth-response-headers", "the global auth service's fields sent on to the backends", nil),
	cfgRow("global-auth-*", NginxUnsupported, "", "this part of global external authentication is not supported", valueEmpty),
	cfgRow("no-auth-locations", NginxPartial, "", "ACME http-01 challenges (/.well-known/acme-challenge, the default) are answered before any authentication; no other path is exempt", nil),
	cfgRow("limit-req-status-code", NginxSupported, "--limit-status-code", "one status for both", valueIs("503")),
	cfgRow("limit-conn-status-code", NginxSupported, "--limit-status-code", "one status for both", valueIs("503")),
	cfgRow("limit-conn-zone-variable", NginxPartial, "", "the limits count by client address after --trusted-proxies ($binary_remote_addr); another variable is not supported", valueIs("$binary_remote_addr")),
	cfgRow("custom-http-errors", NginxUnsupported, "", "Postern does not intercept backends' error responses", valueEmpty),
	cfgRow("enable-modsecurity", NginxUnsupported, "", "Postern has no WAF", valueFalse),
	cfgRow("enable-owasp-modsecurity-crs", NginxUnsupported, "", "Postern has no WAF", valueFalse),
	cfgRow("allow-snippet-annotations", NginxIgnored, "", "Postern refuses snippet annotations whatever this says; the Ingresses that have one are reported unsupported", nil),
	cfgRow("annotations-risk-level", NginxIgnored, "", "Postern has no risk levels: snippets are always refused, every other annotation is a row of its table", nil),
	cfgRow("annotation-value-word-blocklist", NginxIgnored, "", "Postern renders no value into a configuration, so no word needs blocking", nil),
	cfgRow("allow-cross-namespace-resources", NginxPartial, "", "Postern never reads another namespace's Secrets or ConfigMaps", valueFalse),
	cfgRow("strict-validate-path-type", NginxIgnored, "", "Postern checks every path itself: one it cannot serve is a Problem", nil),

	// Headers.
	cfgRow("add-headers", NginxUnsupported, "", "global response headers are not supported", valueEmpty),
	cfgRow("proxy-set-headers", NginxUnsupported, "", "global request headers are not supported", valueEmpty),
	cfgRow("hide-headers", NginxUnsupported, "", "Postern does not drop backends' response headers", valueEmpty),
	cfgRow("global-allowed-response-headers", NginxSupported, "--global-allowed-response-headers", "the only fields custom-headers ConfigMaps may set; without it Postern allows any but its own, where ingress-nginx allows none", nil),
	cfgRow("server-tokens", NginxIgnored, "", "Postern's own answers carry no Server header", nil),
	cfgRow("allow-backend-server-header", NginxPartial, "", "Postern passes a backend's Server header on", valueTrue),
	cfgRow("enable-underscores-in-headers", NginxPartial, "", "Postern forwards header names with underscores, as this set to true", valueTrue),
	cfgRow("ignore-invalid-headers", NginxPartial, "", "Postern answers 400 to a malformed header field rather than dropping it", nil),
	cfgRow("generate-request-id", NginxPartial, "", "Postern always keeps a client's valid X-Request-Id and makes one otherwise, sent to the backend and back", valueTrue),
	cfgRow("proxy-add-original-uri-header", NginxUnsupported, "", "Postern sends no X-Original-URI", valueFalse),

	// TLS and HTTP/2.
	cfgRow("ssl-protocols", NginxPartial, "", noteFixedTLS, nil),
	cfgRow("ssl-ciphers", NginxPartial, "", noteFixedTLS, nil),
	cfgRow("ssl-ecdh-curve", NginxPartial, "", noteFixedTLS, nil),
	cfgRow("ssl-session-*", NginxIgnored, "", "Postern resumes TLS sessions by tickets, rotated hourly", nil),
	cfgRow("ssl-reject-handshake", NginxUnsupported, "", "Postern serves the default certificate for unknown names", valueFalse),
	cfgRow("enable-ocsp", NginxPartial, "", "no OCSP stapling", valueFalse),
	cfgRow("use-http2", NginxPartial, "", "Postern always offers HTTP/2 by ALPN", valueTrue),
	cfgRow("http2-max-concurrent-streams", NginxIgnored, "", "Go's HTTP/2 server's limits", nil),

	// Backends.
	cfgRow("load-balance", NginxPartial, "", "round_robin is Postern's default; per Ingress, postern.dev/load-balance (round-robin, least-request)", valueIs("round_robin")),
	cfgRow("service-upstream", NginxPartial, "", "per Ingress only (the service-upstream annotation)", valueFalse),
	cfgRow("relative-redirects", NginxPartial, "", "per Ingress only (the relative-redirects annotation)", valueFalse),
	cfgRow("proxy-ssl-location-only", NginxIgnored, "", "goes with the proxy-ssl-* annotations (see their rows)", nil),

	// Compression.
	cfgRow("use-gzip", NginxUnsupported, "", "Postern does not compress responses; a backend's compressed ones pass through", valueFalse),
	cfgRow("enable-brotli", NginxUnsupported, "", "Postern does not compress responses; a backend's compressed ones pass through", valueFalse),
	cfgRow("gzip-*", NginxIgnored, "", "goes with use-gzip", nil),
	cfgRow("brotli-*", NginxIgnored, "", "goes with enable-brotli", nil),

	// Logs and tracing.
	cfgRow("log-format-upstream", NginxPartial, "--log-format", "Postern's access log has fixed fields, in JSON or console form", nil),
	cfgRow("log-format-escape-json", NginxPartial, "--log-format", "Postern's access log has fixed fields, in JSON or console form", nil),
	cfgRow("log-format-escape-none", NginxPartial, "--log-format", "Postern's access log has fixed fields, in JSON or console form", nil),
	cfgRow("disable-access-log", NginxSupported, "--access-log", "--access-log=false", valueFalse),
	cfgRow("skip-access-log-urls", NginxPartial, "--access-log-sample", "paths cannot be left out; the flag samples requests (5xx always logged)", valueEmpty),
	cfgRow("enable-opentelemetry", NginxPartial, "", noteNoTracing, valueFalse),
	cfgRow("opentelemetry-*", NginxPartial, "", noteNoTracing, nil),
	cfgRow("otel-*", NginxPartial, "", noteNoTracing, nil),

	// nginx internals (reference §6.2).
	notApplicable("worker-processes"),
	notApplicable("worker-cpu-affinity"),
	notApplicable("max-worker-connections"),
	notApplicable("max-worker-open-files"),
	notApplicable("enable-multi-accept"),
	notApplicable("reuse-port"),
	notApplicable("enable-aio-write"),
	notApplicable("*-hash-max-size"),
	notApplicable("*-hash-bucket-size"),
	notApplicable("lua-shared-dicts"),
	notApplicable("ssl-buffer-size"),
	notApplicable("proxy-stream-*"),
	notApplicable("error-log-level"),
	notApplicable("access-log-path"),
	notApplicable("error-log-path"),
	notApplicable("debug-connections"),
	notApplicable("grpc-buffer-size-kb"),
	notApplicable("default-type"),
	notApplicable("nginx-status-ipv4-whitelist"),
	notApplicable("nginx-status-ipv6-whitelist"),
	notApplicable("bind-address"),
	notApplicable("disable-ipv6"),
	notApplicable("disable-ipv6-dns"),
	notApplicable("syslog-*"),
	cfgRow("use-geoip", NginxIgnored, "", "not applicable: Postern has no GeoIP", nil),
	cfgRow("use-geoip2", NginxIgnored, "", "not applicable: Postern has no GeoIP", nil),

	// Snippets (reference §6.3): refused, like the annotations.
	cfgRow("main-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("http-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("server-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("location-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("stream-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("modsecurity-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
	cfgRow("global-auth-snippet", NginxUnsupported, "", noteConfigSnippet, valueEmpty),
}

// nginxConfigRowFor returns the row of ConfigMap key k: its own, else the
// family with the longest pattern that matches; nil when there is none.
func nginxConfigRowFor(k string) *nginxConfigRow {
	var best *nginxConfigRow
	for i := range nginxConfigTable {
		r := &nginxConfigTable[i]
		pre, prefixed := strings.CutSuffix(r.key, "*")
		suf, suffixed := strings.CutPrefix(r.key, "*")
		switch {
		case r.key == k:
			return r
		case prefixed && strings.HasPrefix(k, pre), suffixed && strings.HasSuffix(k, suf):
			if best == nil || len(r.key) > len(best.key) {
				best = r
			}
		}
	}
	return best
}

// NginxConfigMapFindings reports every key of cm, ingress-nginx's
// controller ConfigMap, with what Postern does instead (nginxConfigTable),
// sorted by key.
func NginxConfigMapFindings(cm *corev1.ConfigMap) []NginxFinding {
	if cm == nil {
		return nil
	}
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]NginxFinding, 0, len(keys))
	for _, k := range keys {
		v := cm.Data[k]
		f := NginxFinding{Kind: FindingConfigMap, Namespace: cm.Namespace, ConfigMap: cm.Name, Key: k, Value: v,
			Status: NginxUnknown, Note: "not an ingress-nginx ConfigMap key Postern knows; ignored"}
		if r := nginxConfigRowFor(k); r != nil {
			f.Status, f.Flag, f.Note = r.status, r.flag, r.note
			if r.same != nil && r.same(strings.TrimSpace(v)) {
				f.Status, f.Flag, f.Note = NginxIgnored, "", noteSame
			}
		}
		out = append(out, f)
	}
	return out
}
