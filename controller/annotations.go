package controller

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/postern-dev/postern/proxy/route"
)

// AnnotationLoadBalance chooses the load-balancing policy of the backends of
// an Ingress: "round-robin" (the default) or "least-request".
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

// defaultHSTSMaxAge is the max-age of AnnotationHSTS "true": one year.
const defaultHSTSMaxAge = 365 * 24 * 60 * 60

// Load-balancing policies AnnotationLoadBalance accepts.
const (
	balancerRoundRobin   = "round-robin"
	balancerLeastRequest = "least-request"
)

// ingressConfig is what the postern.dev annotations of one Ingress ask for.
// The zero value is the defaults.
type ingressConfig struct {
	// balancer is the route.Backend.Balancer of the Ingress's backends;
	// empty means the default policy.
	balancer string
	// noSSLRedirect turns off the HTTP to HTTPS redirect of the TLS hosts.
	noSSLRedirect bool
	// hsts is the Strict-Transport-Security value; empty sends none.
	hsts string
	// protocol is the route.Backend.Protocol; empty means HTTP.
	protocol route.Protocol
	// acme gets the TLS hosts' certificates from the ACME issuer.
	acme bool
}

// parseIngressConfig reads the postern.dev annotations of an Ingress. An
// invalid value never stops the Ingress from being served: the default is
// used and a problem message says so.
func parseIngressConfig(annotations map[string]string) (ingressConfig, []string) {
	var (
		cfg      ingressConfig
		problems []string
	)
	cfg.balancer = annotation(annotations, AnnotationLoadBalance, "", balancerRoundRobin, parseBalancer, &problems)
	cfg.noSSLRedirect = !annotation(annotations, AnnotationSSLRedirect, true, "true", strconv.ParseBool, &problems)
	cfg.hsts = annotation(annotations, AnnotationHSTS, "", "no HSTS", parseHSTS, &problems)
	cfg.protocol = annotation(annotations, AnnotationBackendProtocol, "", "HTTP", parseProtocol, &problems)
	cfg.acme = annotation(annotations, AnnotationACME, false, "false", strconv.ParseBool, &problems)
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
	case balancerLeastRequest:
		return v, nil
	}
	return "", fmt.Errorf("want %s or %s", balancerRoundRobin, balancerLeastRequest)
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
