package controller

import (
	"errors"
	"strconv"

	"github.com/postern-dev/postern/proxy/route"
)

// The readers of ingress-nginx's upstream-hash-by (reference §2.3): a
// consistent hash of the value of a template of nginx variables picks the
// endpoint; upstream-hash-by-subset spreads each key over
// upstream-hash-by-subset-size endpoints (3). Cookie affinity, when the
// Ingress has it too, comes first, as in ingress-nginx.

// defaultHashSubsetSize is ingress-nginx's upstream-hash-by-subset-size
// default.
const defaultHashSubsetSize = 3

func readUpstreamHashBy(v string, n *nginxRead) error {
	t, err := route.ParseTemplate(v, false)
	if err != nil {
		return err
	}
	h := &route.HashBy{Key: t}
	if s, ok := n.get("upstream-hash-by-subset"); ok {
		if on, err := parseNginxBool(s); err == nil && on {
			h.SubsetSize = defaultHashSubsetSize
			if size, ok := n.get("upstream-hash-by-subset-size"); ok {
				if sz, err := parseSubsetSize(size); err == nil {
					h.SubsetSize = sz
				}
			}
		}
	}
	n.cfg.policy.HashBy = h
	return nil
}

func parseSubsetSize(v string) (int, error) {
	sz, err := strconv.Atoi(v)
	if err != nil || sz < 1 || sz > 64 {
		return 0, errors.New("want a whole number from 1 to 64")
	}
	return sz, nil
}

func readHashSubsetSize(v string, _ *nginxRead) error {
	_, err := parseSubsetSize(v)
	return err
}
