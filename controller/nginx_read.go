package controller

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// nginxConfig is what the ingress-nginx annotations of an Ingress ask for
// besides the route policy and backend settings they fill in
// ingressConfig.
type nginxConfig struct {
	// regex is use-regex, or implied by rewrite-target: the paths of the
	// Ingress's hosts are regex paths.
	regex bool
	// aliases are the server-alias names, normalised.
	aliases []string
	// canary is set on a canary Ingress (canary: "true"): its canary-*
	// settings.
	canary *route.Canary
	// defaultBackend, errorCodes and noIntercept are default-backend,
	// custom-http-errors and disable-proxy-intercept-errors.
	defaultBackend string
	errorCodes     []int
	noIntercept    bool
	// auth is what the authentication annotations ask for; nil: none.
	auth *nginxAuth
	// customHeaders is custom-headers as written: a ConfigMap.
	customHeaders string
	// proxySSL is what the proxy-ssl-* annotations ask for; nil: none.
	proxySSL *nginxProxySSL
	// passthrough is ssl-passthrough: "true".
	passthrough bool
}

// nginxRead is the state of reading one Ingress's ingress-nginx
// annotations.
type nginxRead struct {
	ann    map[string]string
	prefix string
	cfg    *ingressConfig
}

// get returns the trimmed value of annotation name (or of its alias when
// only that is set) under the prefix; an empty value is absent, as in
// ingress-nginx.
func (n *nginxRead) get(name string) (string, bool) {
	v, ok := n.ann[n.prefix+"/"+name]
	if !ok {
		if r := nginxByName[name]; r != nil && r.Alias != "" {
			v, ok = n.ann[n.prefix+"/"+r.Alias]
		}
	}
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// nginxResult is what reading an Ingress's ingress-nginx annotations
// found wrong.
type nginxResult struct {
	// refused are the Problems of annotations that make the Ingress
	// answer 503 (unsupported, or an invalid routing or access value).
	refused []refusal
	keys    []string // the refused annotations, full keys
	// problems are messages of tuning values that fell back to the
	// default, problemKeys their annotations' full keys.
	problems, problemKeys []string
}

// readNginx reads the ingress-nginx annotations under prefix into cfg,
// one row of nginxTable each, in key order. Snippets are left to
// refusedSnippets; unknown annotations are ignored, as ingress-nginx
// ignores them.
func readNginx(annotations map[string]string, prefix string, cfg *ingressConfig) nginxResult {
	var res nginxResult
	n := &nginxRead{ann: annotations, prefix: prefix, cfg: cfg}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, prefix+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := k[len(prefix)+1:]
		r := nginxByName[name]
		if r == nil || isSnippet(name) {
			continue
		}
		if name == r.Alias {
			if _, both := annotations[prefix+"/"+r.Name]; both {
				continue // the canonical name wins
			}
		}
		v := strings.TrimSpace(annotations[k])
		switch {
		case r.Status == NginxUnsupported:
			res.refuse(k, ReasonUnsupportedAnnotation, fmt.Sprintf("annotation %s is not supported by Postern (%s)", k, r.Note))
		case r.read == nil || v == "":
		default:
			if err := r.read(v, n); err != nil {
				res.invalid(k, v, r, err)
			}
		}
	}
	return res
}

// refusal is the Problem of an annotation that refuses its Ingress.
type refusal struct{ reason, msg string }

// refuse records an annotation that makes the Ingress answer 503.
func (res *nginxResult) refuse(key, reason, msg string) {
	res.keys = append(res.keys, key)
	res.refused = append(res.refused, refusal{reason, msg})
}

// invalid records the invalid value v of annotation key, read by r.
func (res *nginxResult) invalid(key, v string, r *nginxRow, err error) {
	if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
		err = ne.Err
	}
	if errors.Is(err, errUnsupported) {
		res.refuse(key, ReasonUnsupportedAnnotation, fmt.Sprintf("annotation %s has the value %s, which Postern does not support (%v); every path of this Ingress answers 503", key, quoteShort(v), err))
		return
	}
	var kept keptError
	switch {
	case errors.As(err, &kept):
		res.problems = append(res.problems, withValue("annotation %s has the value %s: %v", key, v, kept))
		res.problemKeys = append(res.problemKeys, key)
		return
	case r.kind == kindTuning:
		res.problems = append(res.problems, withValue("annotation %s has an invalid value %s (%v); using the default", key, v, err))
		res.problemKeys = append(res.problemKeys, key)
		return
	}
	res.refuse(key, ReasonInvalidAnnotation, withValue("annotation %s has an invalid value %s (%v); every path of this Ingress answers 503, as it cannot be served as written", key, v, err))
}

// maxMessage bounds a Problem's message, which becomes an Event's.
const maxMessage = 512

// withValue formats a message about annotation key's value v and its
// error err (format takes them in that order): v quoted, shorter than
// quoteShort makes it when the error repeats much of it (a value of
// escaped bytes quotes to four times its length), so that the message
// stays within maxMessage.
func withValue(format, key, v string, err error) string {
	msg := fmt.Sprintf(format, key, quoteShort(v), err)
	for n := min(len(v), maxQuoted); len(msg) > maxMessage && n > 0; n /= 2 {
		msg = fmt.Sprintf(format, key, fmt.Sprintf("%s... (%d bytes)", strconv.QuoteToASCII(v[:n]), len(v)), err)
	}
	return msg
}

// isSnippet reports whether name is one of snippetAnnotations.
func isSnippet(name string) bool { return slices.Contains(snippetAnnotations, name) }

// parseNginxBool parses a boolean as ingress-nginx does (strconv.ParseBool).
func parseNginxBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New(`want "true" or "false"`)
	}
	return b, nil
}

func readBool(v string, _ *nginxRead) error {
	_, err := parseNginxBool(v)
	return err
}

func readNoWAF(v string, _ *nginxRead) error {
	on, err := parseNginxBool(v)
	if err == nil && on {
		return fmt.Errorf("no WAF: %w", errUnsupported)
	}
	return err
}

func readUseRegex(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	n.cfg.nginx.regex = n.cfg.nginx.regex || on
	return err
}

func readRewriteTarget(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, true)
	if err != nil {
		return err
	}
	rw := &route.Rewrite{Target: t}
	if p, ok := n.get("x-forwarded-prefix"); ok {
		rw.ForwardedPrefix = p
	}
	n.cfg.policy.Rewrite = rw
	n.cfg.nginx.regex = true
	return nil
}

func readForwardedPrefix(v string, _ *nginxRead) error {
	if !fieldValueOK(v) {
		return errors.New("a header value cannot hold control characters")
	}
	return nil // sent with rewrite-target, which reads it
}

// fieldValueOK reports whether v can be a header field value.
func fieldValueOK(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f })
}

func readUpstreamVhost(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return err
	}
	if s, lit := t.Literal(); lit {
		if _, msg := normalizeHost(s); msg != "" && !strings.Contains(s, ":") {
			return errors.New("want a host name")
		}
	}
	n.cfg.policy.UpstreamHost = t
	return nil
}

func readBackendProtocol(v string, n *nginxRead) error {
	var p route.Protocol
	switch strings.ToUpper(v) {
	case "HTTP", "AUTO_HTTP":
		return nil
	case "HTTPS":
		p = route.ProtocolHTTPS
	case "GRPC":
		p = route.ProtocolGRPC
	case "GRPCS":
		p = route.ProtocolGRPCS
	case "FCGI":
		return fmt.Errorf("FastCGI backends: %w", errUnsupported)
	default:
		return errors.New("want HTTP, HTTPS, AUTO_HTTP, GRPC, GRPCS or FCGI")
	}
	n.cfg.backend.set(string(p), func(be *route.Backend) { be.Protocol = p })
	return nil
}

func readServiceUpstream(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err == nil && on {
		n.cfg.backend.set("service-upstream", func(be *route.Backend) { be.ServiceUpstream = true })
	}
	return err
}

func readServerAlias(v string, n *nginxRead) error {
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		h, msg := normalizeHost(a)
		if msg != "" || h == "" {
			return fmt.Errorf("%s is not a host name Postern can serve (nginx regex names are not supported)", quoteShort(a))
		}
		if !slices.Contains(n.cfg.nginx.aliases, h) {
			n.cfg.nginx.aliases = append(n.cfg.nginx.aliases, h)
		}
	}
	return nil
}

// parseNginxSize parses an nginx size, `^\d+[bkmgBKMG]?$`, into bytes.
func parseNginxSize(v string) (int64, error) {
	if s, ok := strings.CutSuffix(strings.ToLower(v), "b"); ok && s != "" && isDigits(s) {
		v = s
	}
	return parseSize(v)
}

func readProxyBodySize(v string, n *nginxRead) error {
	size, err := parseNginxSize(v)
	if err != nil {
		return err
	}
	n.cfg.policy.MaxBodySize = size
	return nil
}

// parseSeconds parses ingress-nginx's timeouts: whole seconds, no unit
// (strconv.Atoi: "60s" is invalid), positive, at most maxTimeout.
func parseSeconds(v string) (route.Duration, error) {
	s, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return 0, errors.New("want a whole number of seconds, without a unit")
	case s <= 0:
		return 0, errors.New("want a positive number of seconds")
	case time.Duration(s) > maxTimeout/time.Second:
		return 0, fmt.Errorf("want at most %d seconds", int(maxTimeout/time.Second))
	}
	return route.Duration(time.Duration(s) * time.Second), nil
}

func readProxyConnectTimeout(v string, n *nginxRead) error {
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	n.cfg.backend.set("connect-timeout="+time.Duration(d).String(), func(be *route.Backend) { be.ConnectTimeout = d })
	return nil
}

func readProxyReadTimeout(v string, n *nginxRead) error {
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	n.cfg.policy.ReadTimeout, n.cfg.policy.IdleTimeout = d, d
	return nil
}

func readProxySendTimeout(v string, n *nginxRead) error {
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	n.cfg.policy.SendTimeout = d
	return nil
}

func readProxyNextUpstream(v string, n *nginxRead) error {
	for w := range strings.FieldsSeq(v) {
		switch w {
		case "off":
			n.cfg.policy.Retries = -1
		case "error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
			"http_403", "http_404", "http_429", "non_idempotent":
		default:
			return fmt.Errorf("%s is not a proxy-next-upstream condition", quoteShort(w))
		}
	}
	return nil
}

func readProxyNextUpstreamTries(v string, n *nginxRead) error {
	tries, err := strconv.Atoi(v)
	switch {
	case err != nil || tries < 0:
		return errors.New("want a number of tries, 0 for the most")
	case n.cfg.policy.Retries < 0:
		// proxy-next-upstream: off wins.
	case tries == 0 || tries > route.MaxRetries+1:
		n.cfg.policy.Retries = route.MaxRetries
	case tries == 1:
		n.cfg.policy.Retries = -1
	default:
		n.cfg.policy.Retries = tries - 1
	}
	return nil
}

func readLoadBalance(v string, n *nginxRead) error {
	switch v {
	case "round_robin":
		return nil
	case "ewma":
		n.cfg.backend.set(balancerEWMA, func(be *route.Backend) { be.Balancer = balancerEWMA })
		return nil
	case "chash", "chashsubset", "sticky_balanced", "sticky_persistent":
		return fmt.Errorf("%s is not supported; round_robin is used", v)
	}
	return errors.New("want round_robin or ewma")
}

// entryText names an entry of a list value in a message: quoted when that
// is short, else "an entry" (the message quotes the whole value already).
func entryText(item string) string {
	if q := quoteShort(item); len(q) <= 40 {
		return q
	}
	return "an entry"
}

func readSSLPassthrough(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	n.cfg.nginx.passthrough = on
	return err
}

// readProxyNextUpstreamTimeout reads proxy-next-upstream-timeout: whole
// seconds after the first attempt during which a failed one is retried;
// 0 (nginx's default) means no limit.
func readProxyNextUpstreamTimeout(v string, n *nginxRead) error {
	if v == "0" {
		return nil
	}
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	n.cfg.policy.RetryTimeout = d
	return nil
}
