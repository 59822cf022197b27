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
	// Protocol is how the proxy talks to the endpoints: ProtocolHTTP (also
	// the zero value), ProtocolHTTPS, ProtocolH2C, ProtocolGRPC or
	// ProtocolGRPCS.
	Protocol Protocol `json:"protocol,omitempty"`

	// Retries is how many times a request that could not reach an
	// endpoint (connection refused or reset before any response byte) is
	// sent again, each time to another endpoint of the backend, when that
	// is safe (see the proxy's package doc). Zero means DefaultRetries; a
	// negative value means no retries.
	Retries int `json:"retries,omitempty"`
	// ConnectTimeout bounds connecting to an endpoint; zero means the
	// proxy's default (proxy.Options.DialTimeout).
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// ReadTimeout bounds the wait for an endpoint's response headers once
	// the request is sent (the proxy answers 504); zero means the proxy's
	// default (proxy.Options.ResponseHeaderTimeout).
	ReadTimeout Duration `json:"readTimeout,omitempty"`
	// IdleTimeout is the longest an endpoint may stay silent while the
	// proxy waits for the next part of a response body; the response is
	// cut when it is exceeded. Zero means no limit.
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// MaxBodySize is the largest request body, in bytes, sent to the
	// backend; a larger one answers 413. Zero means no limit.
	MaxBodySize int64 `json:"maxBodySize,omitempty"`
}

// Retry limits of Backend.Retries.
const (
	// DefaultRetries is the number of retries of a Backend whose Retries
	// is zero.
	DefaultRetries = 1
	// MaxRetries is the most retries a backend may ask for.
	MaxRetries = 5
)

// RetryBudget returns how many retries b allows: Retries, with zero
// meaning DefaultRetries and a negative value none, capped at MaxRetries.
func (b *Backend) RetryBudget() int {
	switch {
	case b.Retries < 0:
		return 0
	case b.Retries == 0:
		return DefaultRetries
	}
	return min(b.Retries, MaxRetries)
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

// Route is one path of a virtual host and the backend serving it.
type Route struct {
	// PathType is how Path is compared; empty only for a table's default
	// route, which matches everything.
	PathType PathType `json:"pathType,omitempty"`
	// Path is the normalised path: Prefix paths carry no trailing slash
	// (except "/" itself).
	Path string `json:"path,omitempty"`
	// Backend serves the traffic of this route; never nil.
	Backend *Backend `json:"backend"`
	// Source is the Ingress that declared the route.
	Source Source `json:"source"`
}

// VirtualHost is a set of routes served under one host name.
type VirtualHost struct {
	// Host is the lower-case host name; "*.example.com" for a wildcard host
	// and "" for the catch-all host that rules without a host form.
	Host string `json:"host"`
	// Routes are in match order: longest path first, Exact before Prefix on
	// equal length, then by path.
	Routes []*Route `json:"routes"`

	exact  map[string]*Route // Exact routes by path
	prefix map[string]*Route // Prefix routes by normalised path
}

// NewVirtualHost returns a virtual host for host with routes put in match
// order. When two routes share a path and type the first one given wins and
// the later ones are dropped; the controller resolves such conflicts before
// it gets here, so this only keeps the table consistent.
func NewVirtualHost(host string, routes []*Route) *VirtualHost {
	vh := &VirtualHost{
		Host:   host,
		exact:  make(map[string]*Route),
		prefix: make(map[string]*Route),
	}
	for _, r := range routes {
		switch r.PathType {
		case PathExact:
			if _, dup := vh.exact[r.Path]; dup {
				continue
			}
			vh.exact[r.Path] = r
		case PathPrefix:
			p := NormalizePrefix(r.Path)
			if _, dup := vh.prefix[p]; dup {
				continue
			}
			if p != r.Path {
				c := *r
				c.Path = p
				r = &c
			}
			vh.prefix[p] = r
		default:
			continue
		}
		vh.Routes = append(vh.Routes, r)
	}
	slices.SortStableFunc(vh.Routes, compareRoutes)
	return vh
}

// compareRoutes orders routes in match order.
func compareRoutes(a, b *Route) int {
	if c := cmp.Compare(len(b.Path), len(a.Path)); c != 0 {
		return c
	}
	if a.PathType != b.PathType {
		if a.PathType == PathExact {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Path, b.Path)
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

	exact       map[string]*VirtualHost // by lower-case host
	wildcard    map[string]*VirtualHost // by the suffix after "*."
	any         *VirtualHost            // rules without a host
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
// order, then the default route if there is one.
func (t *Table) Routes() iter.Seq[*Route] {
	return func(yield func(*Route) bool) {
		for _, vh := range t.VirtualHosts {
			for _, r := range vh.Routes {
				if !yield(r) {
					return
				}
			}
		}
		if t.Default != nil {
			yield(t.Default)
		}
	}
}

// Backends returns every distinct backend of the table, sorted by key; the
// proxy uses it to learn which endpoints are still in use after a swap.
func (t *Table) Backends() []*Backend {
	seen := make(map[*Backend]bool)
	var out []*Backend
	for r := range t.Routes() {
		if r.Backend != nil && !seen[r.Backend] {
			seen[r.Backend] = true
			out = append(out, r.Backend)
		}
	}
	slices.SortStableFunc(out, func(a, b *Backend) int { return strings.Compare(a.Key, b.Key) })
	return out
}
