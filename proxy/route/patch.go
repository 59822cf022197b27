package route

import (
	"maps"
	"sync/atomic"
)

// Patch records how WithBackends made a table from another one, so that
// whoever keeps state for the other table's backends and routes (the
// proxy: balancers, endpoint health, connection pools, metric children)
// can carry it over for just what changed instead of walking every
// endpoint again.
type Patch struct {
	// Base is the ID of the table that was patched.
	Base uint64
	// Backends maps each replaced backend of the base table to the backend
	// replacing it; no other backend changed.
	Backends map[*Backend]*Backend
	// Routes maps each route of the base table that now points at a
	// replacing backend to its copy; every other route is shared.
	Routes map[*Route]*Route
}

// tableIDs numbers tables; 0 is never given out.
var tableIDs atomic.Uint64

// ID identifies t among the tables of this process.
func (t *Table) ID() uint64 { return t.id }

// Patch returns how WithBackends made t, or nil when t was built anew.
func (t *Table) Patch() *Patch { return t.patch }

// WithBackends returns a copy of t in which every route whose backend is a
// key of replace uses replace's value instead. Virtual hosts without such
// a route are shared with t, not copied, so the cost grows with the routes
// that change plus one pass over t's host maps. t itself is not changed.
//
// It is the incremental path for endpoint changes: the controller swaps in
// backends with new endpoints without building the table again.
func (t *Table) WithBackends(replace map[*Backend]*Backend) *Table {
	if len(replace) == 0 {
		return t
	}
	record := &Patch{Base: t.id, Backends: maps.Clone(replace), Routes: make(map[*Route]*Route)}
	out := t.withBackends(replace, record)
	out.patch = record
	return out
}

// withBackends is WithBackends, recording what it replaced in record; the
// tables of t's listeners are patched alike, into the same record.
func (t *Table) withBackends(replace map[*Backend]*Backend, record *Patch) *Table {
	patch := func(r *Route) *Route {
		if r == nil {
			return nil
		}
		if !usesAny(r, replace) {
			return r
		}
		if c, done := record.Routes[r]; done {
			return c
		}
		c := *r
		c.Backends = make([]WeightedBackend, len(r.Backends))
		for i, wb := range r.Backends {
			if nb, ok := replace[wb.Backend]; ok {
				wb.Backend = nb
			}
			c.Backends[i] = wb
		}
		record.Routes[r] = &c
		return &c
	}
	out := &Table{
		id:                 tableIDs.Add(1),
		VirtualHosts:       make([]*VirtualHost, len(t.VirtualHosts)),
		Default:            patch(t.Default),
		TLS:                t.TLS,
		DefaultCertificate: t.DefaultCertificate,
		ClientValidation:   t.ClientValidation,
		exact:              make(map[string]*VirtualHost, len(t.exact)),
		wildcard:           make(map[string]*VirtualHost, len(t.wildcard)),
		tlsExact:           t.tlsExact,
		tlsWildcard:        t.tlsWildcard,
		deep:               t.deep,
	}
	for i, vh := range t.VirtualHosts {
		nvh := vh
		for _, r := range vh.Routes {
			if usesAny(r, replace) {
				nvh = vh.withRoutes(patch)
				break
			}
		}
		out.VirtualHosts[i] = nvh
	}
	if len(t.Sections) > 0 {
		out.Sections = make([]*Section, len(t.Sections))
		for i, s := range t.Sections {
			ns := *s
			ns.Table = s.Table.withBackends(replace, record)
			out.Sections[i] = &ns
		}
	}
	if len(t.Listeners) > 0 {
		out.Listeners = make([]*Listener, len(t.Listeners))
		for i, l := range t.Listeners {
			nl := *l
			nl.Table = l.Table.withBackends(replace, record)
			out.Listeners[i] = &nl
		}
	}
	// The host maps point at the (maybe new) virtual hosts; VirtualHosts is
	// already in order, and t's maps held each of them exactly once.
	for _, vh := range out.VirtualHosts {
		switch {
		case vh.Host == "":
			out.any = vh
		case len(vh.Host) > 2 && vh.Host[:2] == "*.":
			out.wildcard[vh.Host[2:]] = vh
		default:
			out.exact[vh.Host] = vh
		}
	}
	return out
}

// usesAny reports whether r has a backend that is a key of replace.
func usesAny(r *Route, replace map[*Backend]*Backend) bool {
	for _, wb := range r.Backends {
		if _, ok := replace[wb.Backend]; ok {
			return true
		}
	}
	return false
}

// withRoutes returns a copy of vh with every route passed through f, which
// keeps paths and types, so that match order and lookup maps carry over.
func (vh *VirtualHost) withRoutes(f func(*Route) *Route) *VirtualHost {
	out := &VirtualHost{
		Host:        vh.Host,
		Routes:      make([]*Route, len(vh.Routes)),
		ClientAuth:  vh.ClientAuth,
		Passthrough: vh.Passthrough,
		AnyDepth:    vh.AnyDepth,
		exact:       remap(vh.exact, f),
		prefix:      remap(vh.prefix, f),
	}
	for i, r := range vh.Routes {
		out.Routes[i] = f(r)
	}
	if vh.regex != nil {
		out.regex = make([]*Route, len(vh.regex))
		for i, r := range vh.regex {
			out.regex[i] = f(r)
		}
	}
	return out
}

// remap returns a copy of sets with every route passed through f; f is
// is called again for routes it has seen, and must answer alike.
func remap(sets map[string][]*Route, f func(*Route) *Route) map[string][]*Route {
	out := make(map[string][]*Route, len(sets))
	for p, set := range sets {
		ns := make([]*Route, len(set))
		for i, r := range set {
			ns[i] = f(r)
		}
		out[p] = ns
	}
	return out
}
