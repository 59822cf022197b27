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

// tables yields t, then the table of each of its listeners.
func (t *Table) tables(yield func(*Table) bool) {
	if !yield(t) {
		return
	}
	for _, l := range t.Listeners {
		if l.Table != nil && !yield(l.Table) {
			return
		}
	}
}
