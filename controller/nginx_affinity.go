package controller

import (
	"errors"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's cookie affinity (reference §2.11):
// affinity: cookie turns it on for the Ingress's paths; affinity-mode,
// affinity-canary-behavior and session-cookie-* shape it. Every row reads
// into the route.Affinity that affinity made; without it they only check
// their value.

// defaultSessionCookie is ingress-nginx's session-cookie-name default.
const defaultSessionCookie = "INGRESSCOOKIE"

// affinity returns the affinity being read, nil when the Ingress has no
// affinity: cookie.
func (n *nginxRead) affinity() *route.Affinity {
	if v, ok := n.get("affinity"); !ok || v != "cookie" {
		return nil
	}
	if n.cfg.policy.Affinity == nil {
		n.cfg.policy.Affinity = &route.Affinity{Mode: route.AffinityBalanced, CookieName: defaultSessionCookie}
	}
	return n.cfg.policy.Affinity
}

func readAffinity(v string, n *nginxRead) error {
	if v != "cookie" {
		return errors.New(`want "cookie", the only affinity ingress-nginx has`)
	}
	n.affinity()
	return nil
}

// readAffinityField returns a reader that parses a value with parse and,
// when the Ingress has affinity, sets it with set.
func readAffinityField[T any](parse func(string) (T, error), set func(*route.Affinity, T)) func(string, *nginxRead) error {
	return func(v string, n *nginxRead) error {
		t, err := parse(v)
		if err != nil {
			return err
		}
		if a := n.affinity(); a != nil {
			set(a, t)
		}
		return nil
	}
}

func parseAffinityMode(v string) (route.AffinityMode, error) {
	switch m := route.AffinityMode(v); m {
	case route.AffinityBalanced, route.AffinityPersistent:
		return m, nil
	}
	return "", errors.New(`want "balanced" or "persistent"`)
}

func parseCanaryBehavior(v string) (bool, error) {
	switch v {
	case "sticky":
		return false, nil
	case "legacy":
		return true, nil
	}
	return false, errors.New(`want "sticky" or "legacy"`)
}

func parseCookieName(v string) (string, error) {
	if !isToken(v) {
		return "", errors.New("want a cookie name")
	}
	return v, nil
}

func parseCookiePath(v string) (string, error) {
	if !strings.HasPrefix(v, "/") || !fieldValueOK(v) || strings.ContainsAny(v, "; ,") {
		return "", errors.New("want a path starting with \"/\"")
	}
	return v, nil
}

func parseCookieDomain(v string) (string, error) {
	if !fieldValueOK(v) || strings.ContainsAny(v, "; ,") {
		return "", errors.New("want a domain name")
	}
	return v, nil
}

func parseCookieSeconds(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("want a whole number of seconds")
	}
	return n, nil
}

func parseSameSite(v string) (string, error) {
	for _, s := range []string{"None", "Lax", "Strict"} {
		if strings.EqualFold(v, s) {
			return s, nil
		}
	}
	return "", errors.New(`want "None", "Lax" or "Strict"`)
}

var (
	readAffinityMode    = readAffinityField(parseAffinityMode, func(a *route.Affinity, m route.AffinityMode) { a.Mode = m })
	readCanaryBehavior  = readAffinityField(parseCanaryBehavior, func(a *route.Affinity, legacy bool) { a.CanaryLegacy = legacy })
	readCookieName      = readAffinityField(parseCookieName, func(a *route.Affinity, s string) { a.CookieName = s })
	readCookiePath      = readAffinityField(parseCookiePath, func(a *route.Affinity, s string) { a.CookiePath = s })
	readCookieDomain    = readAffinityField(parseCookieDomain, func(a *route.Affinity, s string) { a.CookieDomain = s })
	readCookieExpires   = readAffinityField(parseCookieSeconds, func(a *route.Affinity, s int) { a.Expires = s })
	readCookieMaxAge    = readAffinityField(parseCookieSeconds, func(a *route.Affinity, s int) { a.MaxAge = s })
	readCookieSecure    = readAffinityField(parseNginxBool, func(a *route.Affinity, on bool) { a.Secure = on })
	readCookieSameSite  = readAffinityField(parseSameSite, func(a *route.Affinity, s string) { a.SameSite = s })
	readConditionalNone = readAffinityField(parseNginxBool, func(a *route.Affinity, on bool) { a.ConditionalSameSiteNone = on })
	readChangeOnFailure = readAffinityField(parseNginxBool, func(a *route.Affinity, on bool) { a.ChangeOnFailure = on })
)

// withCookiePath returns a copy of p whose affinity cookie has the path
// of the route, the Ingress path as written (ingress-nginx's
// $location_path), when session-cookie-path does not set one; p itself
// when it has no affinity or its path is set.
func withCookiePath(p *route.Policy, path string) *route.Policy {
	if p == nil || p.Affinity == nil || p.Affinity.CookiePath != "" {
		return p
	}
	if path == "" {
		path = "/"
	}
	c, a := *p, *p.Affinity
	a.CookiePath = path
	c.Affinity = &a
	return &c
}
