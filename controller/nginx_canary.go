package controller

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// ingress-nginx's canary Ingresses (reference §2.10): an Ingress with
// canary: "true" is not served on its own. Each of its paths is attached
// to the route of the mainline Ingress with the same host and path, as
// the route's canary backend (route.Canary); a path without a mainline
// is not served (404, never a catch-all), and a route takes one canary.
// Of the canary's annotations only the canary ones and the balancing
// ones (load-balance, upstream-hash-by, affinity) count; the mainline's
// apply to canary traffic.

// errCanaryOff is the error of a canary-* annotation on an Ingress
// without canary: "true": ingress-nginx discards the canary settings and
// serves the Ingress as any other.
var errCanaryOff = errors.New(`read only on an Ingress with canary: "true"; ignored`)

// canary returns the canary settings being read, or errCanaryOff.
func (n *nginxRead) canary() (*route.Canary, error) {
	if v, ok := n.get("canary"); !ok {
		return nil, errCanaryOff
	} else if on, err := parseNginxBool(v); err != nil || !on {
		return nil, errCanaryOff
	}
	if n.cfg.nginx.canary == nil {
		n.cfg.nginx.canary = &route.Canary{WeightTotal: 100}
	}
	return n.cfg.nginx.canary, nil
}

func readCanary(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err != nil || !on {
		return err
	}
	_, err = n.canary()
	return err
}

func readCanaryByHeader(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	if !isToken(v) {
		return errors.New("want a header name")
	}
	c.Header = http.CanonicalHeaderKey(v)
	return nil
}

func readCanaryByHeaderValue(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	if !fieldValueOK(v) {
		return errors.New("a header value cannot hold control characters")
	}
	c.HeaderValue = v
	return nil
}

// keptError is what is wrong with a value Postern keeps although it is
// invalid, doing what ingress-nginx does with it.
type keptError string

func (e keptError) Error() string { return string(e) }

func readCanaryByHeaderPattern(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	c.HeaderPattern = v
	if _, err := regexp.Compile(v); err != nil {
		return keptError(fmt.Sprintf("RE2 cannot compile it (%v); a request with the header goes to the mainline, as ingress-nginx's runtime error sends it", shortError(err)))
	}
	return nil
}

func readCanaryByCookie(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	if !isToken(v) {
		return errors.New("want a cookie name")
	}
	c.Cookie = v
	return nil
}

func readCanaryWeight(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	w, err := strconv.Atoi(v)
	if err != nil || w < 0 {
		return errors.New("want a whole number, 0 or more")
	}
	c.Weight = w
	return nil
}

func readCanaryWeightTotal(v string, n *nginxRead) error {
	c, err := n.canary()
	if err != nil {
		return err
	}
	w, err := strconv.Atoi(v)
	if err != nil || w <= 0 {
		return errors.New("want a whole number above 0")
	}
	c.WeightTotal = max(w, 100) // a total under 100 is 100 in ingress-nginx
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), as header
// and cookie names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// canaryAnnotation reports whether ingress-nginx reads annotation name on
// a canary Ingress: the canary ones and the balancing ones.
func canaryAnnotation(name string) bool {
	for _, p := range []string{"canary", "load-balance", "upstream-hash-by", "affinity", "session-cookie"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// canaryTranslation is a canary Ingress waiting for the mainlines to be
// claimed, with why it cannot be attached ("" when it can).
type canaryTranslation struct {
	t       *ingressTranslation
	refused string
}

// deferCanary keeps t, a canary Ingress, for attachCanaries, reporting the
// Problems of the annotations ingress-nginx reads on it; a refused one
// (unsupported, or a snippet) keeps the canary from being attached.
func (t *ingressTranslation) deferCanary(nres nginxResult, snippets []string) {
	var refused []string
	for i, k := range nres.keys {
		if canaryAnnotation(strings.TrimPrefix(k, t.b.opts.annotationsPrefix()+"/")) {
			refused = append(refused, k)
			t.b.problem(t.src, nres.refused[i].reason, strings.Replace(nres.refused[i].msg, "every path of this Ingress answers 503", "the canary is not served", 1))
		}
	}
	refused = append(refused, snippets...)
	for i, m := range nres.problems {
		if canaryAnnotation(strings.TrimPrefix(nres.problemKeys[i], t.b.opts.annotationsPrefix()+"/")) {
			t.b.problem(t.src, ReasonInvalidAnnotation, m)
		}
	}
	ct := &canaryTranslation{t: t}
	if len(refused) > 0 {
		ct.refused = strings.Join(refused, ", ")
	}
	t.b.canaries = append(t.b.canaries, ct)
}

// attachCanaries attaches every canary Ingress, oldest first, to its
// mainlines' routes.
func attachCanaries(b *builder) {
	for _, ct := range b.canaries {
		ct.attach()
	}
}

// attach makes each path of the canary Ingress the canary of the route of
// the mainline with the same host and path.
func (ct *canaryTranslation) attach() {
	t := ct.t
	if ct.refused != "" {
		t.b.problem(t.src, ReasonCanaryNotServed, fmt.Sprintf("the canary is not served (refused: %s); its mainlines serve all their requests", ct.refused))
		return
	}
	if t.ing.Spec.DefaultBackend != nil {
		t.b.problem(t.src, ReasonCanaryNotServed, "the default backend of a canary Ingress is not served, as in ingress-nginx")
	}
	for i := range t.ing.Spec.Rules {
		rule := &t.ing.Spec.Rules[i]
		host, msg := normalizeHost(rule.Host)
		if msg != "" {
			t.b.problem(t.src, ReasonInvalidHost, msg)
			continue
		}
		if rule.HTTP == nil {
			continue
		}
		for j := range rule.HTTP.Paths {
			ct.attachPath(host, &rule.HTTP.Paths[j])
		}
	}
}

// attachPath attaches one path of the canary to its mainline's route.
func (ct *canaryTranslation) attachPath(host string, p *networkingv1.HTTPIngressPath) {
	t := ct.t
	rp := normalizePath(p.PathType, p.Path)
	desc := describeRoute(host, rp.shown, rp.declared)
	if rp.reason != "" {
		t.b.problem(t.src, rp.reason, desc+" "+rp.msg)
		return
	}
	if t.b.nginx.regex[host] {
		if rp = t.regexPath(rp, p.Path, desc); rp.reason != "" {
			return
		}
	}
	main, ok := t.b.claimedRoute(host, routeKey{pathType: rp.pathType, path: rp.path})
	switch {
	case !ok:
		t.b.problem(t.src, ReasonCanaryNotServed, desc+" has no mainline Ingress with the same host and path; the canary path is not served (404), as in ingress-nginx")
		return
	case main.route.Canary != nil:
		t.b.problem(t.src, ReasonCanaryNotServed, fmt.Sprintf("%s already has a canary (%s); a route takes one, this one is not served", desc, main.route.CanaryBackend().Key))
		return
	case main.refused:
		t.b.problem(t.src, ReasonCanaryNotServed, fmt.Sprintf("%s of the mainline %s is refused and answers 503; the canary is not attached", desc, main.route.Source))
		return
	}
	set := main.settings
	if bal := t.cfg.backend.fields.Balancer; bal != set.fields.Balancer {
		set.set("canary-balancer="+bal, func(be *route.Backend) { be.Balancer = bal })
	}
	be, reason, what := t.resolveWith(&p.Backend, set)
	if reason != "" {
		t.b.problem(t.src, reason, what+"; the canary of "+desc+" answers 503")
	}
	c := *t.cfg.nginx.canary
	main.route.Backends = append(main.route.Backends, route.WeightedBackend{Backend: be})
	main.route.Canary = &c
}
