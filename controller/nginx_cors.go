package controller

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's CORS annotations (reference §2.9):
// enable-cors turns it on for the Ingress's paths with ingress-nginx's
// defaults; cors-* change them. An invalid methods, headers, credentials
// or max-age value falls back to the default, as in ingress-nginx. A
// cors-allow-origin that is not a list of origins at all is refused
// (ingress-nginx would allow every origin instead, with credentials); an
// entry of a valid list that is not an origin is skipped, as there.

// ingress-nginx's CORS defaults.
const (
	defaultCORSMethods = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
	defaultCORSHeaders = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
	defaultCORSMaxAge  = 1728000
)

// The syntax ingress-nginx checks CORS values against.
var (
	// corsOriginLoose is what an entry of the list may be at all, ingress-
	// nginx's check of the whole value (corsOriginRegexValidator) taken
	// entry by entry; ingress-nginx allows every origin when the whole
	// value fails it, Postern refuses the value instead, but accepts "*"
	// beside other entries (which the check fails and the fallback makes
	// "*" there).
	corsOriginLoose = regexp.MustCompile(`^(([a-z]+://)?(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|null|\*)$`)
	// corsOrigin is what an entry must be to be kept (corsOriginRegex).
	corsOrigin = regexp.MustCompile(`^([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|\*|null)?$`)
	// corsMethods, corsHeaders and corsExpose are the checks of the other
	// lists.
	corsMethods = regexp.MustCompile(`^([A-Za-z]+,?\s?)+$`)
	corsHeaders = regexp.MustCompile(`^[A-Za-z0-9-_, ]*$`)
	corsExpose  = regexp.MustCompile(`^(([A-Za-z0-9\-\_]+|\*),?\s?)+$`)
)

// cors returns the CORS being read, nil when the Ingress does not have
// enable-cors: "true".
func (n *nginxRead) cors() *route.CORS {
	v, ok := n.get("enable-cors")
	if on, err := parseNginxBool(v); !ok || err != nil || !on {
		return nil
	}
	if n.cfg.policy.CORS == nil {
		n.cfg.policy.CORS = &route.CORS{
			AnyOrigin:        true,
			AllowMethods:     defaultCORSMethods,
			AllowHeaders:     defaultCORSHeaders,
			AllowCredentials: true,
			MaxAge:           defaultCORSMaxAge,
		}
	}
	return n.cfg.policy.CORS
}

func readEnableCORS(v string, n *nginxRead) error {
	_, err := parseNginxBool(v)
	n.cors()
	return err
}

// readCORSAllowOrigin reads the comma list of origins: "*" anywhere in it
// allows every origin; entries that are not "scheme://host[:port]",
// "scheme://*.host[:port]" or "null" are skipped.
func readCORSAllowOrigin(v string, n *nginxRead) error {
	var origins, skipped []string
	anyOrigin := false
	for o := range strings.SplitSeq(v, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
		case !corsOriginLoose.MatchString(o):
			return fmt.Errorf(`%s is not an origin: want a comma list of origins ("https://app.example.com", "https://*.example.com:8443", "null") or "*"`, entryText(o))
		case o == "*":
			anyOrigin = true
		case corsOrigin.MatchString(o):
			origins = append(origins, o)
		default:
			skipped = append(skipped, o)
		}
	}
	if c := n.cors(); c != nil {
		c.AnyOrigin = anyOrigin
		c.AllowOrigins = nil
		if !anyOrigin {
			c.AllowOrigins = origins
		}
	}
	if len(skipped) > 0 && !anyOrigin {
		msg := fmt.Sprintf("skipped %s, which want a scheme (\"https://%s\")", strings.Join(skipped, ", "), skipped[0])
		if len(origins) == 0 {
			msg += "; no origin is left, so no request gets CORS fields, as in ingress-nginx"
		}
		return keptError(msg)
	}
	return nil
}

// readCORSList returns a reader of a list checked by re, set by set.
func readCORSList(re *regexp.Regexp, want string, set func(*route.CORS, string)) func(string, *nginxRead) error {
	return func(v string, n *nginxRead) error {
		if !re.MatchString(v) {
			return errors.New(want)
		}
		if c := n.cors(); c != nil {
			set(c, v)
		}
		return nil
	}
}

var (
	readCORSMethods = readCORSList(corsMethods, "want a comma list of methods", func(c *route.CORS, v string) { c.AllowMethods = v })
	readCORSHeaders = readCORSList(corsHeaders, "want a comma list of header names", func(c *route.CORS, v string) { c.AllowHeaders = v })
	readCORSExpose  = readCORSList(corsExpose, `want a comma list of header names or "*"`, func(c *route.CORS, v string) { c.ExposeHeaders = v })
)

func readCORSCredentials(v string, n *nginxRead) error {
	on, err := parseNginxBool(v)
	if err != nil {
		return err
	}
	if c := n.cors(); c != nil {
		c.AllowCredentials = on
	}
	return nil
}

func readCORSMaxAge(v string, n *nginxRead) error {
	s, err := strconv.Atoi(v)
	if err != nil {
		return errors.New("want a whole number of seconds")
	}
	if c := n.cors(); c != nil {
		c.MaxAge = s
	}
	return nil
}
