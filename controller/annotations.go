package controller

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postern-dev/postern/proxy/route"
)

// AnnotationLoadBalance chooses the load-balancing policy of the backends of
// an Ingress: "round-robin" (the default), "least-request" or "ewma" (the
// peak-EWMA latency balancer).
const AnnotationLoadBalance = "postern.dev/load-balance"

// AnnotationSSLRedirect turns off, with "false", the 308 redirect to HTTPS
// of plain HTTP requests for the hosts of an Ingress's spec.tls; the
// default is "true".
const AnnotationSSLRedirect = "postern.dev/ssl-redirect"

// AnnotationHSTS turns on Strict-Transport-Security for the HTTPS responses
// of the hosts of an Ingress's spec.tls: "true" (max-age one year), or
// directives like "max-age=63072000; includeSubDomains; preload".
const AnnotationHSTS = "postern.dev/hsts"

// AnnotationBackendProtocol is how the proxy talks to the backends of an
// Ingress: HTTP (the default), HTTPS, H2C, GRPC or GRPCS.
const AnnotationBackendProtocol = "postern.dev/backend-protocol"

// AnnotationACME set to "true" gets the certificates for the hosts of an
// Ingress's spec.tls from the ACME issuer instead of from Secrets.
const AnnotationACME = "postern.dev/acme"

// AnnotationRetries is how many times a request that could not reach an
// endpoint of the Ingress's backends is sent to another endpoint, from 0
// (no retries) to route.MaxRetries; the default is route.DefaultRetries.
const AnnotationRetries = "postern.dev/retries"

// AnnotationTimeoutConnect bounds connecting to an endpoint of the
// Ingress's backends: a Go duration ("5s", "1m30s") or a number of
// seconds, as in ingress-nginx. The default is the proxy's.
const AnnotationTimeoutConnect = "postern.dev/timeout-connect"

// AnnotationTimeoutRead bounds the wait for an endpoint's response headers
// once the request is sent (the client gets 504); same syntax as
// AnnotationTimeoutConnect. The default is the proxy's.
const AnnotationTimeoutRead = "postern.dev/timeout-read"

// AnnotationTimeoutIdle is the longest an endpoint may stay silent while
// the proxy waits for more of its response body; the response is cut when
// it is exceeded. Same syntax as AnnotationTimeoutConnect; no limit by
// default.
const AnnotationTimeoutIdle = "postern.dev/timeout-idle"

// AnnotationMaxBodySize is the largest request body sent to the Ingress's
// backends, larger ones get 413: a size in bytes with an optional unit k,
// m or g (powers of 1024, nginx style: "8m", "512k"), or "0" for no limit,
// the default.
const AnnotationMaxBodySize = "postern.dev/max-body-size"

// maxTimeout is the longest timeout the timeout annotations accept.
const maxTimeout = 24 * time.Hour

// defaultHSTSMaxAge is the max-age of AnnotationHSTS "true": one year.
const defaultHSTSMaxAge = 365 * 24 * 60 * 60

// Load-balancing policies AnnotationLoadBalance accepts.
const (
	balancerRoundRobin   = "round-robin"
	balancerLeastRequest = "least-request"
	balancerEWMA         = "ewma"
)

// ingressConfig is what the postern.dev annotations of one Ingress ask
// for, in the table builder's terms: the settings of the Ingress's
// backends (the Service ports), the policy of its routes (per-request
// settings) and the settings of its TLS hosts. The rows of
// ingressAnnotations fill it.
type ingressConfig struct {
	backend backendSettings
	policy  route.Policy
	tls     tlsSettings
	nginx   nginxConfig
}

// annotationRow is one postern.dev annotation and all that Postern does
// with it: adding a feature is adding a row (and its parse function).
type annotationRow struct {
	// key is the annotation, one of the Annotation constants.
	key string
	// read reads the annotation from an object's annotations, validates
	// it, and returns cfg with what it asks for applied, or the default
	// when it is not set or invalid; an invalid value also returns a
	// problem message. (cfg goes by value: a pointer given to a function
	// value escapes, and would cost an allocation for every Ingress.)
	read func(annotations map[string]string, cfg ingressConfig) (ingressConfig, []string)
	// readUnset is true when read changes cfg even without the
	// annotation, because its default is not the zero value (see row).
	// Other rows are read only when their annotation is set.
	readUnset bool
}

// row returns the row of annotation key. Its read parses the value with
// parse, or takes def when the annotation is not set or invalid (defText
// is how the message names def, see annotation), and gives it to apply
// unless it is T's zero value, which is what the config holds already. So
// parse returns the zero value for a value that asks for nothing
// (round-robin, HTTP, one retry), and a backend setting changes a
// backend's Key only when it changes something.
func row[T comparable](key string, def T, defText string, parse func(string) (T, error), apply func(*ingressConfig, T)) annotationRow {
	var zero T
	return annotationRow{key: key, readUnset: def != zero, read: func(annotations map[string]string, cfg ingressConfig) (ingressConfig, []string) {
		var problems []string
		if v := annotation(annotations, key, def, defText, parse, &problems); v != zero {
			apply(&cfg, v)
		}
		return cfg, problems
	}}
}

// ingressAnnotations are the postern.dev annotations of an Ingress, one row
// a feature. They are read in this order, which is also the order of
// their parts in a backend's Key ("ns/svc:80|least-request|HTTPS").
var ingressAnnotations = []annotationRow{
	row(AnnotationLoadBalance, "", balancerRoundRobin, parseBalancer, func(c *ingressConfig, v string) {
		c.backend.set(v, func(be *route.Backend) { be.Balancer = v })
	}),
	row(AnnotationBackendProtocol, "", "HTTP", parseProtocol, func(c *ingressConfig, p route.Protocol) {
		c.backend.set(string(p), func(be *route.Backend) { be.Protocol = p })
	}),
	row(AnnotationRetries, 0, strconv.Itoa(route.DefaultRetries), parseRetries, func(c *ingressConfig, n int) {
		c.policy.Retries = n
	}),
	row(AnnotationTimeoutConnect, 0, "the default", parseTimeout, func(c *ingressConfig, d route.Duration) {
		c.backend.set("connect-timeout="+time.Duration(d).String(), func(be *route.Backend) { be.ConnectTimeout = d })
	}),
	row(AnnotationTimeoutRead, 0, "the default", parseTimeout, func(c *ingressConfig, d route.Duration) {
		c.policy.ReadTimeout = d
	}),
	row(AnnotationTimeoutIdle, 0, "no idle timeout", parseTimeout, func(c *ingressConfig, d route.Duration) {
		c.policy.IdleTimeout = d
	}),
	row(AnnotationMaxBodySize, 0, "no limit", parseSize, func(c *ingressConfig, n int64) {
		c.policy.MaxBodySize = n
	}),
	// The hosts of spec.tls redirect plain HTTP to HTTPS unless this turns
	// it off.
	row(AnnotationSSLRedirect, true, "true", strconv.ParseBool, func(c *ingressConfig, on bool) { c.tls.host.Redirect = on }),
	row(AnnotationHSTS, "", "no HSTS", parseHSTS, func(c *ingressConfig, v string) { c.tls.host.HSTS = v }),
	row(AnnotationACME, false, "false", strconv.ParseBool, func(c *ingressConfig, on bool) { c.tls.acme = on }),
	row(AnnotationRequestHeaders, nil, "no edits", parseHeaderEdits, func(c *ingressConfig, e *route.HeaderEdits) { c.policy.RequestHeaders = e }),
	row(AnnotationResponseHeaders, nil, "no edits", parseHeaderEdits, func(c *ingressConfig, e *route.HeaderEdits) { c.policy.ResponseHeaders = e }),
}

// parseIngressConfig reads the postern.dev annotations of an Ingress
// through the rows of ingressAnnotations, over what cfg holds already (the
// ingress-nginx annotations': postern.dev wins). An invalid value never
// stops the Ingress from being served: the default is used and a problem
// message says so.
func parseIngressConfig(annotations map[string]string, cfg ingressConfig) (ingressConfig, []string) {
	var problems []string
	for _, r := range ingressAnnotations {
		if _, set := annotations[r.key]; !set && !r.readUnset {
			continue
		}
		var msgs []string
		cfg, msgs = r.read(annotations, cfg)
		problems = append(problems, msgs...)
	}
	return cfg, problems
}

// annotation returns the value of annotation key parsed by parse, or def
// when the annotation is not set. When the value does not parse, it returns
// def and appends a problem message to problems; defText is how that
// message names the default. parse's error should say what is wanted and
// not repeat the value: the message quotes the value itself, cut short.
func annotation[T any](annotations map[string]string, key string, def T, defText string, parse func(string) (T, error), problems *[]string) T {
	v, ok := annotations[key]
	if !ok {
		return def
	}
	t, err := parse(v)
	if err != nil {
		// strconv's errors repeat the whole input, which can be a
		// megabyte; keep only the cause.
		if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
			err = ne.Err
		}
		*problems = append(*problems, fmt.Sprintf("annotation %s has an invalid value %s (%v); using %s", key, quoteShort(v), err, defText))
		return def
	}
	return t
}

// parseBalancer parses AnnotationLoadBalance; the default policy is "".
func parseBalancer(v string) (string, error) {
	switch v {
	case balancerRoundRobin:
		return "", nil
	case balancerLeastRequest, balancerEWMA:
		return v, nil
	}
	return "", fmt.Errorf("want %s, %s or %s", balancerRoundRobin, balancerLeastRequest, balancerEWMA)
}

// parseHSTS parses AnnotationHSTS into the header value it sends, built
// from the parsed directives (never the user's text): "true" is one year,
// "false" none.
func parseHSTS(v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return "max-age=" + strconv.Itoa(defaultHSTSMaxAge), nil
	case "false":
		return "", nil
	}
	maxAge, sub, preload := -1, false, false
	for d := range strings.SplitSeq(v, ";") {
		d = strings.TrimSpace(d)
		name, val, hasVal := strings.Cut(d, "=")
		switch {
		case d == "":
		case strings.EqualFold(name, "max-age") && hasVal:
			n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(val), `"`), 10, 31)
			if err != nil {
				return "", errors.New("max-age must be a number of seconds")
			}
			maxAge = int(n)
		case strings.EqualFold(d, "includeSubDomains"):
			sub = true
		case strings.EqualFold(d, "preload"):
			preload = true
		default:
			return "", errors.New(`want "true", "false" or directives max-age=N, includeSubDomains, preload`)
		}
	}
	if maxAge < 0 {
		return "", errors.New("max-age is required")
	}
	out := "max-age=" + strconv.Itoa(maxAge)
	if sub {
		out += "; includeSubDomains"
	}
	if preload {
		out += "; preload"
	}
	return out, nil
}

// parseProtocol parses AnnotationBackendProtocol, any case; HTTP is "".
func parseProtocol(v string) (route.Protocol, error) {
	switch p := route.Protocol(strings.ToUpper(v)); p {
	case route.ProtocolHTTP:
		return "", nil
	case route.ProtocolHTTPS, route.ProtocolH2C, route.ProtocolGRPC, route.ProtocolGRPCS:
		return p, nil
	}
	return "", errors.New("want HTTP, HTTPS, H2C, GRPC or GRPCS")
}

// parseRetries parses AnnotationRetries into route.Policy.Retries: "0"
// is -1 (none) and the default count is 0.
func parseRetries(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || !isDigits(v) || n > route.MaxRetries {
		return 0, fmt.Errorf("want a number of retries from 0 to %d", route.MaxRetries)
	}
	switch n {
	case 0:
		return -1, nil
	case route.DefaultRetries:
		return 0, nil
	}
	return int(n), nil
}

// parseTimeout parses the timeout annotations: a Go duration, or a plain
// number of seconds as ingress-nginx takes; positive and at most
// maxTimeout.
func parseTimeout(v string) (route.Duration, error) {
	var d time.Duration
	if isDigits(v) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxTimeout/time.Second) {
			return 0, fmt.Errorf("want at most %s", maxTimeout)
		}
		d = time.Duration(n) * time.Second
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New(`want a duration like "5s" or "1m30s", or a number of seconds`)
		}
	}
	switch {
	case d <= 0:
		return 0, errors.New("want a positive duration")
	case d > maxTimeout:
		return 0, fmt.Errorf("want at most %s", maxTimeout)
	}
	return route.Duration(d), nil
}

// parseSize parses AnnotationMaxBodySize: a number of bytes with an
// optional unit k, m or g (either case; powers of 1024, as nginx reads
// its sizes). "0" is no limit.
func parseSize(v string) (int64, error) {
	num, unit := v, int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			unit = 1 << 10
		case 'm', 'M':
			unit = 1 << 20
		case 'g', 'G':
			unit = 1 << 30
		}
		if unit > 1 {
			num = v[:n-1]
		}
	}
	if !isDigits(num) {
		return 0, errors.New(`want a size like "8m", "512k", "1g" or a number of bytes`)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, errors.New("too large")
	}
	return n * unit, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// maxQuoted is how many bytes of a user string a message repeats.
const maxQuoted = 64

// quoteShort quotes s for a message, Go-style, so that newlines, control
// characters and invalid UTF-8 come out escaped. A string longer than
// maxQuoted bytes is cut at a character boundary, and its length is given.
func quoteShort(s string) string {
	if len(s) <= maxQuoted {
		return strconv.QuoteToASCII(s)
	}
	n := maxQuoted
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.QuoteToASCII(s[:n]), len(s))
}
