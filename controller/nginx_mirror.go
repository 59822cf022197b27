package controller

import (
	"errors"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's mirror annotations (reference §2.12):
// mirror-target, an absolute http(s) URL with nginx variables, gets a copy
// of every request the Ingress forwards; mirror-host is the copy's Host;
// mirror-request-body (on) sends the body too.

func readMirrorTarget(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return err
	}
	lower := strings.ToLower(v)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") || len(v) <= len("https://") {
		return errors.New("want an absolute http:// or https:// URL")
	}
	m := &route.Mirror{Target: t, Body: true}
	if h, ok := n.get("mirror-host"); ok {
		if _, msg := normalizeHost(h); msg == "" {
			m.Host = h
		}
	}
	if b, ok := n.get("mirror-request-body"); ok && b == "off" {
		m.Body = false
	}
	n.cfg.policy.Mirror = m
	return nil
}

func readMirrorHost(v string, _ *nginxRead) error {
	if _, msg := normalizeHost(v); msg != "" {
		return errors.New("want a host name")
	}
	return nil
}

func readMirrorBody(v string, _ *nginxRead) error {
	if v != "on" && v != "off" {
		return errors.New(`want "on" or "off"`)
	}
	return nil
}
