package route

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"
)

// PathType says how a route's path is compared with a request path.
type PathType string

// The path types a route can have. ImplementationSpecific Ingress paths are
// translated to one of these by the controller.
const (
	// PathExact matches the request path exactly, byte for byte.
	PathExact PathType = "Exact"
	// PathPrefix matches by '/'-separated elements: "/foo" matches "/foo",
	// "/foo/" and "/foo/bar", never "/foobar".
	PathPrefix PathType = "Prefix"
	// PathRegex matches when the expression in Path (RE2 syntax) matches
	// the request path, anywhere unless the expression anchors itself:
	// ingress-nginx's regex locations, which the controller writes as
	// "(?i)^/path". Regex routes are tried after the Exact and Prefix
	// ones, in the order of their paths' lengths, longest first; the
	// first that matches wins.
	PathRegex PathType = "RegularExpression"
)

// Source names the Kubernetes object a route or backend came from, so that
// people debugging routing can tell which Ingress produced what.
type Source struct {
	// Namespace of the object; empty for cluster-scoped objects.
	Namespace string `json:"namespace,omitempty"`
	// Name of the object.
	Name string `json:"name"`
}

// String returns "namespace/name".
func (s Source) String() string {
	if s.Namespace == "" {
		return s.Name
	}
	return s.Namespace + "/" + s.Name
}

// Endpoint is one address traffic for a backend can be sent to.
type Endpoint struct {
	// Address is the "ip:port" (or "[ipv6]:port") the proxy dials. It is the
	// key under which the proxy keeps per-endpoint state across table swaps.
	Address string `json:"address"`
	// Terminating is true when the endpoint is shutting down but still
	// serving; such endpoints are only used when no ready one exists.
	Terminating bool `json:"terminating,omitempty"`
	// Zone is the topology zone of the endpoint; empty when unknown.
	Zone string `json:"zone,omitempty"`
}

// Backend is where a route's traffic goes: a Service port and the endpoints
// behind it.
type Backend struct {
	// Key identifies the backend across table swaps
	// ("namespace/service:port"); the proxy keys balancer state by it.
	Key string `json:"key"`
	// Namespace and Service name the Kubernetes Service.
	Namespace string `json:"namespace"`
	// Service is the Service's name.
	Service string `json:"service"`
	// Port is the Service port as the Ingress named it (a number or a name).
	Port string `json:"port"`
	// Balancer is the load-balancing policy name; empty means the default
	// (round robin).
	Balancer string `json:"balancer,omitempty"`
	// Endpoints are the addresses to send traffic to, sorted by address.
	// Empty means every request answers 503.
	Endpoints []Endpoint `json:"endpoints"`
	// Unavailable, when not empty, says why the backend cannot be resolved
	// (a missing Service, an unknown port). Such a backend has no endpoints
	// and answers 503; it stays in the table so that its traffic never falls
	// through to a shorter path that belongs to someone else.
	Unavailable string `json:"unavailable,omitempty"`
	// FailStatus is the status an Unavailable backend's requests are
	// answered with; zero means 503. The Gateway API asks 500 for a
	// backendRef that cannot be resolved.
	FailStatus int `json:"failStatus,omitempty"`
	// Protocol is how the proxy talks to the endpoints: ProtocolHTTP (also
	// the zero value), ProtocolHTTPS, ProtocolH2C, ProtocolGRPC or
	// ProtocolGRPCS.
	Protocol Protocol `json:"protocol,omitempty"`

	// ConnectTimeout bounds connecting to an endpoint; zero means the
	// proxy's default (proxy.Options.DialTimeout).
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// ServiceUpstream is set when the one endpoint is the Service's
	// ClusterIP (ingress-nginx's service-upstream), for kube-proxy to
	// balance; the Service's EndpointSlices do not change it.
	ServiceUpstream bool `json:"serviceUpstream,omitempty"`
	// TLS, when set, is how the proxy speaks TLS to the endpoints of an
	// HTTPS or GRPCS backend (ingress-nginx's proxy-ssl-*); nil: TLS
	// without verification, SNI or client certificate.
	TLS *BackendTLS `json:"tls,omitempty"`
}

// Duration is a time.Duration that a table renders as text ("1m30s")
// rather than as a number of nanoseconds.
type Duration time.Duration

// MarshalText returns the duration as time.Duration.String writes it.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText parses what MarshalText wrote.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("parse duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Protocol is the protocol spoken to a backend's endpoints.
type Protocol string

// The backend protocols (the postern.dev/backend-protocol annotation).
const (
	// ProtocolHTTP is HTTP/1.1 over plain TCP; the zero value means it too.
	ProtocolHTTP Protocol = "HTTP"
	// ProtocolHTTPS is HTTP/1.1 (or HTTP/2 when offered) over TLS.
	ProtocolHTTPS Protocol = "HTTPS"
	// ProtocolH2C is HTTP/2 over plain TCP (prior knowledge).
	ProtocolH2C Protocol = "H2C"
	// ProtocolGRPC is gRPC: HTTP/2 over plain TCP.
	ProtocolGRPC Protocol = "GRPC"
	// ProtocolGRPCS is gRPC over TLS (HTTP/2).
	ProtocolGRPCS Protocol = "GRPCS"
)

// Route is one match of a virtual host, the policy applied to what it
// matches and the backends serving it.
type Route struct {
	// Match is what a request must have for the route to serve it. Its
	// PathType is empty only for a table's default route, which matches
	// everything.
	Match
	// Policy holds the route's per-request settings; nil: the proxy's
	// defaults. Routes may share one.
	Policy *Policy `json:"policy,omitempty"`
	// Backends serve the route's traffic, each request going to one of
	// them in proportion to its weight; never empty. When every weight is
	// zero the route answers 503.
	Backends []WeightedBackend `json:"backends"`
	// Canary, when set, sends some requests to the last backend, by the
	// rules of an ingress-nginx canary Ingress (canary.go).
	Canary *Canary `json:"canary,omitempty"`
	// Source is the object that declared the route.
	Source Source `json:"source"`
}

// WeightedBackend is one backend of a route and its share of the route's
// traffic.
type WeightedBackend struct {
	// Backend is never nil.
	Backend *Backend `json:"backend"`
	// Weight is the share, relative to the weights of the route's other
	// backends; zero sends it nothing.
	Weight int32 `json:"weight"`
	// ErrorPage marks the route's error backend (errors.go), which has
	// weight 0.
	ErrorPage bool `json:"errorPage,omitempty"`
	// Mirror marks a backend that gets copies of the route's requests (a
	// Gateway API RequestMirror filter), weight 0, for the share of them
	// it gives.
	Mirror *MirrorShare `json:"mirror,omitempty"`
	// RequestHeaders and ResponseHeaders are edits made only when a
	// request goes to this backend (a Gateway API backendRef's filters),
	// after the route's own.
	RequestHeaders  *HeaderEdits `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderEdits `json:"responseHeaders,omitempty"`
}

// Single returns the backends of a route that has only be, with weight 1.
func Single(be *Backend) []WeightedBackend {
	return []WeightedBackend{{Backend: be, Weight: 1}}
}

// First returns the first backend of r, the one a route of a single
// backend sends everything to; nil when r has none.
func (r *Route) First() *Backend {
	if len(r.Backends) == 0 {
		return nil
	}
	return r.Backends[0].Backend
}

// Policy is what a route asks of each request it serves, where that
// differs from the proxy's defaults.
type Policy struct {
	// Retries is how many times a request that could not reach an
	// endpoint (connection refused or reset before any response byte) is
	// sent again, each time to another endpoint of the backend, when that
	// is safe (see the proxy's package doc). Zero means DefaultRetries; a
	// negative value means no retries.
	Retries int `json:"retries,omitempty"`
	// RetryTimeout, when not zero, is how long after the first attempt a
	// failed one may still be sent again (proxy-next-upstream-timeout).
	RetryTimeout Duration `json:"retryTimeout,omitempty"`
	// ReadTimeout bounds the wait for an endpoint's response headers once
	// the request is sent (the proxy answers 504); zero means the proxy's
	// default (proxy.Options.ResponseHeaderTimeout).
	ReadTimeout Duration `json:"readTimeout,omitempty"`
	// IdleTimeout is the longest an endpoint may stay silent while the
	// proxy waits for the next part of a response body; the response is
	// cut when it is exceeded. Zero means no limit.
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// SendTimeout bounds each write of the request body to an endpoint
	// (proxy-send-timeout: the gap between two writes, not the total);
	// zero: ReadTimeout's.
	SendTimeout Duration `json:"sendTimeout,omitempty"`
	// RequestTimeout, when not zero, bounds the whole exchange from the
	// moment it is decided (an HTTPRoute's timeouts.request): no
	// response head by then answers 504, no attempt starts after it, and
	// a response still being relayed is cut.
	RequestTimeout Duration `json:"requestTimeout,omitempty"`
	// AttemptTimeout, when not zero, bounds each attempt, from its start
	// to the end of its response, likewise (timeouts.backendRequest).
	AttemptTimeout Duration `json:"attemptTimeout,omitempty"`
	// MaxBodySize is the largest request body, in bytes, sent to the
	// backend; a larger one answers 413. Zero means no limit.
	MaxBodySize int64 `json:"maxBodySize,omitempty"`
	// Rewrite, when set, replaces the request URI sent to the endpoint
	// (rewrite-target).
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// UpstreamHost, when set, is the Host sent to the endpoints instead
	// of the client's (upstream-vhost); it may use variables.
	UpstreamHost *Template `json:"upstreamHost,omitempty"`
	// RequestHeaders are edits to the request head sent to the endpoints,
	// ResponseHeaders to every response head sent to the client, the
	// route's own answers (a redirect, a 413) included (headers.go).
	RequestHeaders  *HeaderEdits `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderEdits `json:"responseHeaders,omitempty"`
	// ResponseRewrite, when set, rewrites the Location, Refresh and
	// Set-Cookie fields of the endpoints' responses.
	ResponseRewrite *ResponseRewrite `json:"responseRewrite,omitempty"`
	// Affinity, when set, keeps a client's requests on one endpoint with a
	// cookie (affinity.go).
	Affinity *Affinity `json:"affinity,omitempty"`
	// CORS, when set, answers preflights and adds the Access-Control-*
	// fields to the responses of allowed origins (cors.go).
	CORS *CORS `json:"cors,omitempty"`
	// HashBy, when set, picks the endpoint by a consistent hash of a key
	// (hashby.go).
	HashBy *HashBy `json:"hashBy,omitempty"`
	// ErrorPages, when set, sends some answers to the route's error
	// backend (errors.go).
	ErrorPages *ErrorPages `json:"errorPages,omitempty"`
	// Mirror, when set, sends a copy of each forwarded request elsewhere
	// (mirror.go).
	Mirror *Mirror `json:"mirror,omitempty"`
	// RateLimit, when set, limits each client's requests (limit.go).
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// SourceRanges, when set, answers 403 to the client addresses it does
	// not allow (access.go).
	SourceRanges *SourceRanges `json:"sourceRanges,omitempty"`
	// BasicAuth, when set, asks for a user name and password (auth.go).
	BasicAuth *BasicAuth `json:"basicAuth,omitempty"`
	// ExternalAuth, when set, asks another service whether each request
	// may go on (auth.go).
	ExternalAuth *ExternalAuth `json:"externalAuth,omitempty"`
	// ClientAuth, when set, checks the client certificate of each
	// request (clientauth.go); every route of a host has the same.
	ClientAuth *ClientAuth `json:"clientAuth,omitempty"`
	// SatisfyAny lets a request through when any of the source ranges'
	// allow list, BasicAuth and ExternalAuth lets it (ingress-nginx's
	// satisfy: any); false means all must (satisfy: all).
	SatisfyAny bool `json:"satisfyAny,omitempty"`

	// Redirects (redirect.go), in the order they apply.

	// HostRedirect, when set, answers every request of the route with a
	// redirect to another host (from-to-www-redirect); nothing else of
	// the policy applies.
	HostRedirect *HostRedirect `json:"hostRedirect,omitempty"`
	// AppRoot, when not empty, is the path a request for "/" is answered
	// 302 to, before anything else of the route (app-root):
	// Location <scheme>://<Host as sent><AppRoot>.
	AppRoot string `json:"appRoot,omitempty"`
	// Redirect, when set, answers every request of the route with a
	// redirect (permanent-redirect, temporal-redirect).
	Redirect *Redirect `json:"redirect,omitempty"`
	// URLRedirect, when set, answers every request of the route with a
	// redirect to its URL with parts replaced (the Gateway API's
	// RequestRedirect filter).
	URLRedirect *URLRedirect `json:"urlRedirect,omitempty"`
	// URLRewrite, when set, changes the Host and path sent to the
	// endpoints (the Gateway API's URLRewrite filter).
	URLRewrite *URLRewrite `json:"urlRewrite,omitempty"`
	// SSLRedirect says whether the route's plain HTTP requests are
	// redirected to HTTPS; the zero value leaves it to the host's
	// TLSHost.Redirect.
	SSLRedirect SSLRedirect `json:"sslRedirect,omitempty"`
}

// Retry limits of Policy.Retries.
const (
	// DefaultRetries is the number of retries of a route whose policy
	// sets none.
	DefaultRetries = 1
	// MaxRetries is the most retries a route may ask for.
	MaxRetries = 5
)

// RetryBudget returns how many retries p allows: Retries, with zero
// meaning DefaultRetries and a negative value none, capped at MaxRetries.
// A nil policy allows DefaultRetries.
func (p *Policy) RetryBudget() int {
	switch {
	case p == nil || p.Retries == 0:
		return DefaultRetries
	case p.Retries < 0:
		return 0
	}
	return min(p.Retries, MaxRetries)
}

// VirtualHost is a set of routes served under one host name.
type VirtualHost struct {
	// Host is the lower-case host name; "*.example.com" for a wildcard host
	// and "" for the catch-all host that rules without a host form.
	Host string `json:"host"`
	// Routes are in match order: longest path first, Exact before Prefix on
	// equal length, then by path; routes of one path by precedence (see
	// Match.Conditions).
	Routes []*Route `json:"routes"`
	// ClientAuth, when set, is the host's client certificate
	// authentication (clientauth.go); its routes carry it too.
	ClientAuth *ClientAuth `json:"clientAuth,omitempty"`
	// Passthrough, when set, sends the host's TLS connections, unopened,
	// to the backend of its route for "/" (ingress-nginx's
	// ssl-passthrough, with --enable-ssl-passthrough): no HTTP policy
	// applies to them. Plain HTTP requests are routed as usual.
	Passthrough bool `json:"passthrough,omitempty"`
	// AnyDepth makes a wildcard host match hosts any number of labels
	// below its suffix, as Gateway API hostnames do ("*.example.com"
	// matches "a.b.example.com"); without it a wildcard matches one
	// label, as Ingress hosts do. A host one label below is matched by
	// the one-label wildcard first.
	AnyDepth bool `json:"anyDepth,omitempty"`

	exact  map[string][]*Route // Exact routes by path, in precedence order
	prefix map[string][]*Route // Prefix routes by normalised path, likewise
	regex  []*Route            // Regex routes in match order
}

// NewVirtualHost returns a virtual host for host with routes put in match
// order. When two routes share a match the first one given wins and the
// later ones are dropped; the controller resolves such conflicts before it
// gets here, so this only keeps the table consistent. Header names are
// put in canonical form and regular expressions compiled; a route with an
// expression that does not compile never matches.
func NewVirtualHost(host string, routes []*Route) *VirtualHost {
	vh := &VirtualHost{
		Host:   host,
		exact:  make(map[string][]*Route),
		prefix: make(map[string][]*Route),
	}
	seen := make(map[string]bool, len(routes))
	for _, r := range routes {
		var m map[string][]*Route
		switch r.PathType {
		case PathExact:
			m = vh.exact
		case PathPrefix:
			m = vh.prefix
		case PathRegex:
		default:
			continue
		}
		r = r.compiled()
		key := r.Key()
		if seen[key] {
			continue
		}
		seen[key] = true
		if m != nil {
			m[r.Path] = append(m[r.Path], r)
		} else {
			vh.regex = append(vh.regex, r)
		}
		vh.Routes = append(vh.Routes, r)
	}
	slices.SortStableFunc(vh.Routes, compareRoutes)
	slices.SortStableFunc(vh.regex, compareRoutes)
	for _, m := range []map[string][]*Route{vh.exact, vh.prefix} {
		for _, set := range m {
			slices.SortStableFunc(set, compareConditions)
		}
	}
	return vh
}

// compareRoutes orders routes in match order: regex routes after the
// others; then longer paths first. Regex routes of one length are in
// descending order of their paths, as ingress-nginx orders its regex
// locations.
func compareRoutes(a, b *Route) int {
	if ar, br := a.PathType == PathRegex, b.PathType == PathRegex; ar != br {
		if ar {
			return 1
		}
		return -1
	} else if ar {
		if c := cmp.Compare(len(b.Path), len(a.Path)); c != 0 {
			return c
		}
		if c := strings.Compare(b.Path, a.Path); c != 0 {
			return c
		}
		return compareConditions(a, b)
	}
	if c := cmp.Compare(len(b.Path), len(a.Path)); c != 0 {
		return c
	}
	if a.PathType != b.PathType {
		if a.PathType == PathExact {
			return -1
		}
		return 1
	}
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return compareConditions(a, b)
}

// NormalizePrefix drops the trailing slashes of a Prefix path: "/foo/" and
// "/foo" are the same prefix. "/" stays "/".
func NormalizePrefix(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// Table is an immutable routing table: virtual hosts and a default route.
type Table struct {
	// VirtualHosts are sorted: exact hosts by name, then wildcard hosts by
	// name, then the catch-all host (Host "") if there is one.
	VirtualHosts []*VirtualHost `json:"virtualHosts"`
	// Default serves requests no virtual host route matches; nil means 404.
	Default *Route `json:"default,omitempty"`
	// TLS lists the hosts named in spec.tls, sorted like VirtualHosts (see
	// WithTLS); a host not listed is served the default certificate.
	TLS []*TLSHost `json:"tls,omitempty"`
	// DefaultCertificate is served to TLS clients no other certificate
	// fits (--default-ssl-certificate); nil means the proxy's self-signed
	// one.
	DefaultCertificate *Certificate `json:"defaultCertificate,omitempty"`
	// Listeners are the Gateways that listen on addresses of their own,
	// sorted by address (see WithListeners); each is served from its own
	// table, not from this one.
	Listeners []*Listener `json:"listeners,omitempty"`
	// Sections, when there are any (the table of a Gateway's port,
	// --gateway-addresses), split the table by Gateway listener: a
	// request is decided from the section its Host selects alone (see
	// Section), and the table's own virtual hosts are not used. TLS hosts
	// and the default certificate stay the table's.
	Sections []*Section `json:"sections,omitempty"`
	// ClientValidation, when set (a Gateway port's table, the Gateway's
	// spec.tls.frontend), is checked in every TLS handshake of the table's
	// listener, whatever the server name.
	ClientValidation *ClientValidation `json:"clientValidation,omitempty"`

	exact       map[string]*VirtualHost // by lower-case host
	wildcard    map[string]*VirtualHost // by the suffix after "*."
	any         *VirtualHost            // rules without a host
	deep        bool                    // some wildcard host has AnyDepth
	tlsExact    map[string]*TLSHost     // by lower-case host
	tlsWildcard map[string]*TLSHost     // by the suffix after "*."

	id    uint64 // see ID
	patch *Patch // see Patch; nil for a table built by NewTable
}

// NewTable returns a table serving hosts, with def (may be nil) for
// requests nothing else matches. Host names must already be lower case and
// valid; when one appears twice the first wins.
func NewTable(hosts []*VirtualHost, def *Route) *Table {
	t := &Table{
		id:           tableIDs.Add(1),
		VirtualHosts: []*VirtualHost{},
		Default:      def,
		exact:        make(map[string]*VirtualHost),
		wildcard:     make(map[string]*VirtualHost),
	}
	for _, vh := range hosts {
		switch {
		case vh.Host == "":
			if t.any != nil {
				continue
			}
			t.any = vh
		case strings.HasPrefix(vh.Host, "*."):
			suffix := vh.Host[2:]
			if _, dup := t.wildcard[suffix]; dup {
				continue
			}
			t.wildcard[suffix] = vh
			t.deep = t.deep || vh.AnyDepth
		default:
			if _, dup := t.exact[vh.Host]; dup {
				continue
			}
			t.exact[vh.Host] = vh
		}
		t.VirtualHosts = append(t.VirtualHosts, vh)
	}
	slices.SortFunc(t.VirtualHosts, compareHosts)
	return t
}

// hostRank puts exact hosts first, wildcards next and the catch-all last.
func hostRank(h string) int {
	switch {
	case h == "":
		return 2
	case strings.HasPrefix(h, "*."):
		return 1
	default:
		return 0
	}
}

func compareHosts(a, b *VirtualHost) int {
	if c := cmp.Compare(hostRank(a.Host), hostRank(b.Host)); c != 0 {
		return c
	}
	return strings.Compare(a.Host, b.Host)
}

// Empty returns a table with no routes: every request answers 404.
func Empty() *Table { return NewTable(nil, nil) }

// Routes yields every route of the table: those of each virtual host in
// order, then the default route if there is one; then those of each
// listener's table, alike.
func (t *Table) Routes() iter.Seq[*Route] {
	return func(yield func(*Route) bool) {
		for tt := range t.tables {
			for _, vh := range tt.VirtualHosts {
				for _, r := range vh.Routes {
					if !yield(r) {
						return
					}
				}
			}
			if tt.Default != nil && !yield(tt.Default) {
				return
			}
		}
	}
}

// Backends returns every distinct backend of the table (its listeners'
// included), sorted by key; the
// proxy uses it to learn which endpoints are still in use after a swap.
func (t *Table) Backends() []*Backend {
	seen := make(map[*Backend]bool)
	var out []*Backend
	for r := range t.Routes() {
		for _, wb := range r.Backends {
			if wb.Backend != nil && !seen[wb.Backend] {
				seen[wb.Backend] = true
				out = append(out, wb.Backend)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *Backend) int { return strings.Compare(a.Key, b.Key) })
	return out
}
