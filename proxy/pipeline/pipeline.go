package pipeline

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// Policy is one step of the decision for a request. Request looks at the
// request (x.In, and what was decided so far) and may answer it (x.Reply),
// edit its heads (x.Req, x.Resp), change its settings or choose its
// backend; once the request is answered or handed off, no later policy
// runs. A Policy must be safe for concurrent use: one value serves every
// request of its listener or route.
type Policy interface {
	Request(x *Exchange)
}

// PolicyFunc is a Policy as a function.
type PolicyFunc func(x *Exchange)

// Request calls f.
func (f PolicyFunc) Request(x *Exchange) { f(x) }

// Options configure a Pipeline.
type Options struct {
	// Cluster picks endpoints and holds what outlives a table swap;
	// required.
	Cluster *upstream.Cluster
	// Metrics, if not nil, is synced with every table swapped in.
	Metrics *observe.Metrics
	// Policies run, in order, for every request a route matched, after
	// the route's own policies and before the backend is picked.
	Policies []Policy
}

// Pipeline decides what happens to each request, for every engine and
// listener, from the table swapped in last.
type Pipeline struct {
	cluster *upstream.Cluster
	metrics *observe.Metrics
	extra   []Policy
	table   atomic.Pointer[compiled]
	kept    kept       // what the routes' policies keep across swaps
	swapMu  sync.Mutex // serialises Swap, never taken by requests
}

// kept is what the policies of the routes keep across table swaps: the
// rate limits' counts, the basic auth users' verified credentials, the
// external auth service's connections and cache.
type kept struct {
	zones zones
	users userStores
	auth  *authService
}

// New returns a pipeline serving an empty table (every request 404)
// until the first Swap.
func New(opts Options) *Pipeline {
	p := &Pipeline{cluster: opts.Cluster, metrics: opts.Metrics, extra: opts.Policies}
	p.kept.auth = newAuthService(opts.Metrics)
	p.table.Store(compile(route.Empty(), &p.kept))
	return p
}

// Cluster returns the cluster the pipeline picks endpoints from.
func (p *Pipeline) Cluster() *upstream.Cluster { return p.cluster }

// Table returns the table requests are decided from.
func (p *Pipeline) Table() *route.Table { return p.table.Load().t }

// Swap makes t the table new requests are decided from (nil means an
// empty table). Requests already running finish on the table they
// started with; none is blocked or dropped. The cluster's state and the
// metrics carry over (upstream.Cluster.Sync); a table WithBackends made
// from the one served (an endpoint change) is carried over for the
// changed backends only.
func (p *Pipeline) Swap(t *route.Table) {
	if t == nil {
		t = route.Empty()
	}
	p.swapMu.Lock()
	defer p.swapMu.Unlock()
	if pa := t.Patch(); pa != nil {
		if cur := p.table.Load(); cur.t.ID() == pa.Base && p.cluster.SyncPatch(pa) && p.metrics.Patch(pa) {
			p.table.Store(cur.patched(t, pa, &p.kept))
			return
		}
	}
	p.cluster.Sync(t)
	p.metrics.Sync(t)
	p.table.Store(compile(t, &p.kept))
}

// compiled is a table with the runtime form of its routes' policies.
type compiled struct {
	t *route.Table
	// policies are the compiled policies of the routes that have any.
	policies map[*route.Route][]Policy
}

// compile compiles every route of t; the zones and user stores its
// routes do not use are dropped from k.
func compile(t *route.Table, k *kept) *compiled {
	c := &compiled{t: t, policies: make(map[*route.Route][]Policy)}
	k.zones.begin()
	defer k.zones.end()
	k.users.begin()
	defer k.users.end()
	for rt := range t.Routes() {
		if pols := compileRoute(rt, k); len(pols) > 0 {
			c.policies[rt] = pols
		}
	}
	return c
}

// patched returns c for t, which pa made from c's table: the routes pa
// replaced get their policies compiled again; the map is copied only when
// one of them has any.
func (c *compiled) patched(t *route.Table, pa *route.Patch, k *kept) *compiled {
	out := &compiled{t: t, policies: c.policies}
	copied := false
	for or, nr := range pa.Routes {
		_, had := c.policies[or]
		pols := compileRoute(nr, k)
		if !had && len(pols) == 0 {
			continue
		}
		if !copied {
			out.policies = make(map[*route.Route][]Policy, len(c.policies))
			for k, v := range c.policies {
				out.policies[k] = v
			}
			copied = true
		}
		delete(out.policies, or)
		if len(pols) > 0 {
			out.policies[nr] = pols
		}
	}
	return out
}

// compileRoute returns the policies of rt in the order they apply, as
// ingress-nginx's phases order them (reference §1.5); nil for a route
// that has only hostDefaults.
func compileRoute(rt *route.Route, k *kept) []Policy {
	if hr, ok := newHostRedirect(rt); ok {
		// from-to-www-redirect: a server of its own, nothing else runs.
		return []Policy{hr}
	}
	var pols []Policy
	cc, hasCC := newClientCert(rt)
	if hasCC {
		pols = append(pols, cc) // nginx checks it before anything else
	}
	if he, ok := newHeaderEdits(rt); ok {
		pols = append(pols, he)
	}
	if ar, ok := newAppRoot(rt); ok {
		pols = append(pols, ar)
	}
	if c, ok := newCORS(rt); ok {
		pols = append(pols, c) // after app-root, before the redirects
	}
	if rd, ok := newRedirect(rt); ok {
		pols = append(pols, rd)
	}
	if rd, ok := newURLRedirect(rt); ok {
		pols = append(pols, rd)
	}
	if rw, ok := newRewrite(rt); ok {
		pols = append(pols, rw)
	}
	ssl := newSSLRedirect(rt)
	pols = append(pols, ssl)
	if hasCC {
		pols = append(pols, clientCertPlain{cc})
	}
	if l, ok := newLimiter(rt, &k.zones); ok {
		pols = append(pols, l)
	}
	if a, ok := newAccess(rt, k); ok {
		pols = append(pols, a) // after the limits
	}
	if rw, ok := newURLRewrite(rt); ok {
		pols = append(pols, rw)
	}
	if rt.Policy != nil && rt.Policy.UpstreamHost != nil {
		pols = append(pols, upstreamHost{host: rt.Policy.UpstreamHost})
	}
	if rt.Policy != nil && rt.Policy.ResponseRewrite != nil {
		pols = append(pols, respRewrite{rw: rt.Policy.ResponseRewrite})
	}
	if s, ok := routeSettings(rt); ok {
		pols = append(pols, s)
	}
	if bl, ok := newBodyLimit(rt); ok {
		pols = append(pols, bl)
	}
	if a, ok := newAffinity(rt); ok {
		pols = append(pols, a)
	}
	if h, ok := newHashBy(rt); ok {
		pols = append(pols, h)
	}
	if c, ok := newCanary(rt); ok {
		pols = append(pols, c)
	}
	if e, ok := newErrorPages(rt); ok {
		pols = append(pols, e)
	}
	if m, ok := newMirror(rt); ok {
		pols = append(pols, m)
	}
	if m, ok := newBackendMirror(rt); ok {
		pols = append(pols, m)
	}
	if len(pols) == 1 && ssl.mode == route.SSLRedirectDefault {
		return nil
	}
	return pols
}

// ListenerOptions are what a listener adds to the decision.
type ListenerOptions struct {
	// Secure is set for a TLS listener: requests are https, a Host the
	// connection's certificate does not cover gets 421 (Covers), TLS
	// hosts get HSTS.
	Secure bool
	// Trusted are the peers whose forwarding fields are believed (nil: no
	// one).
	Trusted *TrustedProxies
	// Challenges answers ACME http-01 challenges on a plain listener;
	// nil: none.
	Challenges Challenges
	// HTTPSPort is the port clients reach HTTPS on, for the Location of
	// the redirect to HTTPS; 0 and 443 are left out of it.
	HTTPSPort int
	// Port is the port clients reach the listener on (the Service's,
	// not the container's), for the Gateway API's redirects; zero means
	// 80 on a plain listener and HTTPSPort (else 443) on a secure one.
	Port int
	// Covers, on a secure listener, reports whether a request for host
	// may be served on a connection whose TLS server name is serverName;
	// nil: any.
	Covers func(serverName, host string) bool
	// Table, when not empty, is the address of a listener of the table
	// (route.Table.Listener): the requests are decided from that
	// listener's table alone, a Gateway's with an address of its own;
	// while the table has no such listener, every request gets 404.
	Table string
}

// Listener decides the requests of one listener.
type Listener struct {
	p        *Pipeline
	scope    string // ListenerOptions.Table
	secure   bool
	port     int            // ListenerOptions.Port, defaulted
	https    *httpsRedirect // a plain listener's redirect to HTTPS; nil on TLS
	policies []Policy       // in order
}

// Listener returns the decision of the requests of a listener with opts.
func (p *Pipeline) Listener(opts ListenerOptions) *Listener {
	l := &Listener{p: p, scope: opts.Table, secure: opts.Secure, port: opts.Port}
	if l.port == 0 {
		switch {
		case !opts.Secure:
			l.port = 80
		case opts.HTTPSPort > 0:
			l.port = opts.HTTPSPort
		default:
			l.port = 443
		}
	}
	l.policies = append(l.policies, requestID{}, forwarding{trusted: opts.Trusted})
	if opts.Secure {
		if opts.Covers != nil {
			l.policies = append(l.policies, misdirected{covers: opts.Covers})
		}
		l.policies = append(l.policies, hsts{}, gate{})
	} else {
		if opts.Challenges != nil {
			l.policies = append(l.policies, acme{challenges: opts.Challenges})
		}
		l.policies = append(l.policies, gate{})
		l.https = newHTTPSRedirect(opts.HTTPSPort)
	}
	return l
}

// noListener is the table of a listener the table served has not got
// (any more): every request 404.
var noListener = route.Empty()

// Pipeline returns the pipeline l decides for.
func (l *Listener) Pipeline() *Pipeline { return l.p }

// Decide decides x, whose engine filled In and the connection's fields:
// the listener's policies (request ID, forwarding fields, ACME challenge,
// 421, HSTS, the 400/405 gate), the route lookup (the host's redirect to
// HTTPS, else 404, when none), the route's policies (redirects, rewrite,
// the redirect to HTTPS, settings, body limit), the pipeline's own, the
// backend choice and the endpoint pick (503 when none). Decide loads the
// table once: a request sees one table from start to end.
func (l *Listener) Decide(x *Exchange) {
	ct := l.p.table.Load()
	t := ct.t
	if l.scope != "" {
		if t = t.Listener(l.scope); t == nil {
			t = noListener
		}
	}
	x.table = t
	x.Secure = x.Secure || l.secure
	x.https = l.https
	x.ListenerPort = l.port
	if l.run(x, l.policies) {
		return
	}
	rt := t.Lookup(x.In.Host(), x.In.Path(), x.In)
	if rt == nil {
		if !l.run(x, hostDefaults) {
			l.answer(x, ErrorReply(404, "no route"))
		}
		return
	}
	x.Route = rt
	if x.Caps != 0 && routeCaps(rt)&^x.Caps != 0 {
		x.Handoff = observe.HandoffBackendProtocol
		return
	}
	x.Settings = l.p.defaults()
	pols, ok := ct.policies[rt]
	if !ok {
		pols = hostDefaults
	}
	if l.run(x, pols) || l.run(x, l.p.extra) {
		return
	}
	if x.Backend == nil {
		wb := chooseBackend(rt)
		if wb == nil {
			// Every backend of the route has weight 0.
			l.answer(x, ErrorReply(503, "no backend"))
			return
		}
		x.Backend = wb.Backend
		if wb.RequestHeaders != nil {
			applyHeaderEdits(x, &x.Req, *wb.RequestHeaders)
		}
		if wb.ResponseHeaders != nil {
			applyHeaderEdits(x, &x.Resp, *wb.ResponseHeaders)
		}
	}
	be := x.Backend
	if be.ConnectTimeout > 0 {
		x.Settings.ConnectTimeout = time.Duration(be.ConnectTimeout)
	}
	var ep *route.Endpoint
	switch {
	case x.sticky.a != nil:
		ep = l.stickyPick(x, be)
	case x.hash.on:
		ep = hashPick(be.Endpoints, x.hash, l.p.cluster.Health().Ejected)
	default:
		ep = l.p.cluster.Pick(be, x.Key)
	}
	if ep == nil && x.errors != nil && x.errors.be != be {
		// ingress-nginx's default-backend: it answers when the route's
		// Service has no endpoint.
		ep = l.p.toErrorBackend(x, 503)
	}
	if ep == nil && be.FailStatus != 0 && be.Unavailable != "" {
		// A Gateway API backendRef that cannot be resolved: 500.
		l.answer(x, ErrorReply(be.FailStatus, "backend not resolved"))
		return
	}
	if ep == nil {
		// No endpoints: none ready, or the backend is Unavailable.
		l.answer(x, ErrorReply(503, "no endpoint"))
		return
	}
	x.Endpoint = ep
}

// run applies pols to x and reports whether x was decided.
func (l *Listener) run(x *Exchange, pols []Policy) bool {
	for _, pol := range pols {
		pol.Request(x)
		if x.Decided() {
			if x.Reply.Status != 0 {
				l.logReply(x)
			}
			return true
		}
	}
	return false
}

// answer makes r x's answer.
func (l *Listener) answer(x *Exchange, r Reply) {
	x.Reply = r
	l.logReply(x)
}

// logReply logs x's local answer (at debug: they are the client's
// business, or a backend the controller already reported).
func (l *Listener) logReply(x *Exchange) {
	l.p.cluster.Answered(x.Reply.Status, x.Reply.Reason, upstream.Request{
		Method: x.In.Method(), Host: x.In.Host(), Path: x.In.Path(), Backend: x.Backend,
	}, nil)
}

// defaults are the settings of a route that sets none.
func (p *Pipeline) defaults() upstream.Settings { return p.cluster.Defaults() }

// routeCaps returns the capabilities an engine needs for rt's backends.
func routeCaps(rt *route.Route) Caps {
	var c Caps
	for _, wb := range rt.Backends {
		c |= capOf(wb.Backend.Protocol)
	}
	return c
}

// chooseBackend returns the backend of rt a request goes to: one of those
// with a weight above zero, at random in proportion to the weights; nil
// when there is none.
func chooseBackend(rt *route.Route) *route.WeightedBackend {
	bs := rt.Backends
	if len(bs) == 1 {
		if bs[0].Weight > 0 {
			return &bs[0]
		}
		return nil
	}
	var total int64
	for _, wb := range bs {
		total += int64(max(wb.Weight, 0))
	}
	if total == 0 {
		return nil
	}
	n := rand.Int64N(total)
	for i := range bs {
		w := int64(max(bs[i].Weight, 0))
		if n < w {
			return &bs[i]
		}
		n -= w
	}
	return nil
}
