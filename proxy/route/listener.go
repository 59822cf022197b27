package route

import (
	"slices"
	"strings"
)

// Listener is a Gateway listening on an address of its own
// (--gateway-addresses): the requests that arrive at Address are decided
// from Table alone, never from the table it belongs to, and the
// certificates of its TLS handshakes come from Table too.
type Listener struct {
	// Address is "ip:port", as net.Listen takes it.
	Address string `json:"address"`
	// TLS is set for an HTTPS listener: TLS is terminated there.
	TLS bool `json:"tls,omitempty"`
	// Gateway is the Gateway the listener belongs to.
	Gateway Source `json:"gateway"`
	// Table is what the listener serves: the routes attached to the
	// Gateway's listeners on this port, their TLS hosts and default
	// certificate. It has no Listeners of its own.
	Table *Table `json:"table"`
}

// WithListeners returns t with ls as its listeners, sorted by address; t
// is changed and returned, as WithTLS does.
func (t *Table) WithListeners(ls []*Listener) *Table {
	t.Listeners = slices.Clone(ls)
	slices.SortFunc(t.Listeners, func(a, b *Listener) int { return strings.Compare(a.Address, b.Address) })
	return t
}

// Listener returns the table of the listener at address ("ip:port"), nil
// when t has none there.
func (t *Table) Listener(address string) *Table {
	for _, l := range t.Listeners {
		if l.Address == address {
			return l.Table
		}
	}
	return nil
}

// tables yields t, then the table of each of its listeners, and the
// tables of the sections of each.
func (t *Table) tables(yield func(*Table) bool) {
	t.walk(yield)
}

func (t *Table) walk(yield func(*Table) bool) bool {
	if !yield(t) {
		return false
	}
	for _, s := range t.Sections {
		if s.Table != nil && !s.Table.walk(yield) {
			return false
		}
	}
	for _, l := range t.Listeners {
		if l.Table != nil && !l.Table.walk(yield) {
			return false
		}
	}
	return true
}

// Section is one Gateway listener of a port's table (Table.Sections):
// the requests whose Host selects it are decided from its Table alone,
// so that the listeners of a port are isolated from each other
// (GatewayHTTPListenerIsolation). A Host selects the section of the
// listener hostname it is, else of the most specific wildcard that
// covers it (at any depth), else the section without a hostname.
type Section struct {
	// Listener is the Gateway listener's name.
	Listener string `json:"listener"`
	// Hostname is the listener's, "*.example.com" for a wildcard, ""
	// for none.
	Hostname string `json:"hostname,omitempty"`
	// Table holds the routes attached to the listener.
	Table *Table `json:"table"`
}

// Section returns the section of t a request for host is decided from,
// nil when t has none or none matches.
func (t *Table) Section(host string) *Section {
	if len(t.Sections) == 0 {
		return nil
	}
	h := NormalizeHost(host)
	var best, any *Section
	for _, s := range t.Sections {
		switch {
		case s.Hostname == h:
			return s
		case s.Hostname == "":
			any = s
		case strings.HasPrefix(s.Hostname, "*.") && strings.HasSuffix(h, s.Hostname[1:]) && len(h) > len(s.Hostname)-1:
			if best == nil || len(s.Hostname) > len(best.Hostname) {
				best = s
			}
		}
	}
	if best != nil {
		return best
	}
	return any
}
