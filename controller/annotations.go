package controller

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// AnnotationLoadBalance chooses the load-balancing policy of the backends of
// an Ingress: "round-robin" (the default) or "least-request".
const AnnotationLoadBalance = "postern.dev/load-balance"

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
