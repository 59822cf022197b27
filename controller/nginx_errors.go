package controller

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's error pages (reference §2.3):
// default-backend names a Service of the Ingress's namespace (its first
// port) that answers when a rule's Service has no endpoint, and the
// responses whose status custom-http-errors lists, unless
// disable-proxy-intercept-errors. Postern has no controller-wide default
// backend: custom-http-errors works with default-backend.

func readDefaultBackend(v string, n *nginxRead) error {
	if !isDNSLabel(v) {
		return errors.New("want the name of a Service of the Ingress's namespace")
	}
	n.cfg.nginx.defaultBackend = v
	return nil
}

// readCustomHTTPErrors reads a comma list of 4xx and 5xx statuses.
func readCustomHTTPErrors(v string, n *nginxRead) error {
	var codes []int
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		c, err := strconv.Atoi(item)
		if err != nil || c < 400 || c > 599 {
			return fmt.Errorf("%s is not a status from 400 to 599", entryText(item))
		}
		codes = append(codes, c)
	}
	n.cfg.nginx.errorCodes = codes
	return nil
}

func readDisableIntercept(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	n.cfg.nginx.noIntercept = on
	return err
}

// isDNSLabel reports whether s is an RFC 1035 label, as Service names are.
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// errorPages reads the Ingress's default-backend and custom-http-errors
// into its policy and its error backend; it returns the refusal of an
// Ingress whose default-backend Service does not exist (ingress-nginx
// drops such an Ingress), or "".
func (t *ingressTranslation) errorPages() string {
	nc := t.cfg.nginx
	if nc.defaultBackend == "" {
		if len(nc.errorCodes) > 0 && !nc.noIntercept {
			t.b.problem(t.src, ReasonInvalidAnnotation, fmt.Sprintf("annotation %s/custom-http-errors needs %s/default-backend on the Ingress (Postern has no controller-wide default backend); the endpoints' answers pass unchanged",
				t.b.opts.annotationsPrefix(), t.b.opts.annotationsPrefix()))
		}
		return ""
	}
	ns := t.ing.Namespace
	svc := t.b.services[types.NamespacedName{Namespace: ns, Name: nc.defaultBackend}]
	if svc == nil || len(svc.Spec.Ports) == 0 {
		t.b.problem(t.src, ReasonServiceNotFound, fmt.Sprintf("the default-backend service %s is not found in namespace %s, or has no port; every path of this Ingress answers 503, as ingress-nginx does not serve it",
			quoteShort(nc.defaultBackend), quoteShort(ns)))
		return t.b.opts.annotationsPrefix() + "/default-backend"
	}
	be, reason, what := t.b.serviceBackend(ns, nc.defaultBackend, servicePort{number: svc.Spec.Ports[0].Port}, backendSettings{})
	if reason != "" {
		t.b.problem(t.src, reason, what+"; the default-backend answers 503")
	}
	t.errBackend = be
	t.cfg.policy.ErrorPages = &route.ErrorPages{Codes: nc.errorCodes, Intercept: len(nc.errorCodes) > 0 && !nc.noIntercept}
	return ""
}
