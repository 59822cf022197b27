package controller

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// hostRoutes collects the routes of one virtual host and who claimed each.
type hostRoutes struct {
	routes []*route.Route
	owner  map[routeKey]source
	// claimed are the routes of the claims that were won, with what a
	// canary Ingress attached to them needs of their claim.
	claimed map[routeKey]claimed
	// anyDepth is set when a Gateway API route claimed the (wildcard)
	// host: it matches hosts at any depth below its suffix.
	anyDepth bool
}

// claimed is a route and what its claim said.
type claimed struct {
	route    *route.Route
	settings backendSettings // of the claim's backend
	refused  bool            // the claim's object is refused: it answers 503
	created  metav1.Time     // when the claim's object was created
}

// routeKey is what two routes of one host must not share.
type routeKey struct {
	pathType route.PathType
	path     string
	// conds are the route's method, header and query conditions (only
	// Gateway API routes have any), as gatewayRouteKey writes them.
	conds string
}

// routeClaim is a front end's request for one route: the requests for host
// whose path matches path by pathType go to the claim's backend.
type routeClaim struct {
	// src is the object that claims the route, created when.
	src     source
	created metav1.Time
	// host is the normalised host (see normalizeHost); "" is every host.
	host string
	// pathType and path are the route's match, path normalised.
	pathType route.PathType
	path     string
	// shownPath and declaredType are the path and its type as the object
	// wrote them, for messages (shortPath, "ImplementationSpecific").
	shownPath, declaredType string
	// policy is the route's policy; nil: none.
	policy *route.Policy
	// settings are those of the route's backend, and refused says that the
	// claim's object is refused (for a canary attached to the route).
	settings backendSettings
	refused  bool
	// errBackend is the route's error backend (default-backend); nil:
	// none. A refused claim gets none: its 503 must not be served around.
	errBackend *route.Backend
}

// claimRoute gives the route of c to c.src, unless an earlier claim holds
// the same host, path type and path: then c.src gets a Problem and nothing
// changes. Only a claim that is won calls backend, for the route's backend,
// so that a lost route raises no Problems about its backend.
func (b *builder) claimRoute(c routeClaim, backend func() *route.Backend) {
	hr := b.hostRoutes(c.host)
	key := routeKey{pathType: c.pathType, path: c.path}
	if owner, taken := hr.owner[key]; taken {
		shownType := c.declaredType
		if string(c.pathType) != shownType {
			shownType += ", matched as " + string(c.pathType)
		}
		desc := describeRoute(c.host, c.shownPath, shownType)
		if owner == c.src {
			b.problem(c.src, ReasonConflict, fmt.Sprintf("%s appears more than once in this %s; the first one is served", desc, c.src.kind))
		} else {
			b.problem(c.src, ReasonConflict, fmt.Sprintf("%s is already served by %s; it is not served from this %s", desc, owner, c.src.kind))
		}
		return
	}
	hr.owner[key] = c.src
	be := backend()
	rt := &route.Route{
		Match:    route.Match{PathType: c.pathType, Path: c.path},
		Policy:   c.policy,
		Backends: route.Single(be),
		Source:   c.src.route(),
	}
	if c.errBackend != nil && !c.refused {
		rt.Backends = append(rt.Backends, route.WeightedBackend{Backend: c.errBackend, ErrorPage: true})
	}
	hr.routes = append(hr.routes, rt)
	hr.claimed[key] = claimed{route: rt, settings: c.settings, refused: c.refused, created: c.created}
}

// hostRoutes returns the routes claimed for host, made empty when there
// are none yet.
func (b *builder) hostRoutes(host string) *hostRoutes {
	hr := b.hosts[host]
	if hr == nil {
		hr = &hostRoutes{owner: make(map[routeKey]source), claimed: make(map[routeKey]claimed)}
		b.hosts[host] = hr
	}
	return hr
}

// claimedRoute returns the route of host with key that a claim won, if
// there is one.
func (b *builder) claimedRoute(host string, key routeKey) (claimed, bool) {
	hr := b.hosts[host]
	if hr == nil {
		return claimed{}, false
	}
	c, ok := hr.claimed[key]
	return c, ok
}

// claimDefault makes the table's default route, which serves what no route
// matches, src's, unless an earlier claim has it: then src gets a Problem.
// Only a claim that is won calls backend, for the route's backend; policy
// is the route's (nil: none).
func (b *builder) claimDefault(src source, policy *route.Policy, backend func() *route.Backend) {
	if b.def != nil {
		b.problem(src, ReasonConflict, fmt.Sprintf("the default backend is already set by %s; this %s's default backend is ignored", b.defOwner, src.kind))
		return
	}
	b.defOwner = src
	b.def = &route.Route{Policy: policy, Backends: route.Single(backend()), Source: src.route()}
}

// table assembles the routing table from the routes claimed.
func (b *builder) table() *route.Table {
	names := make([]string, 0, len(b.hosts))
	for h := range b.hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	vhosts := make([]*route.VirtualHost, 0, len(names))
	for _, h := range names {
		vh := route.NewVirtualHost(h, b.hosts[h].routes)
		vh.Passthrough = b.opts.SSLPassthrough && b.nginx.passthrough[h]
		vh.AnyDepth = b.hosts[h].anyDepth
		for _, r := range vh.Routes {
			if r.Policy != nil && r.Policy.ClientAuth != nil {
				// The handshake asks for what the host's routes check.
				vh.ClientAuth = r.Policy.ClientAuth
				break
			}
		}
		vhosts = append(vhosts, vh)
	}
	return route.NewTable(vhosts, b.def)
}
