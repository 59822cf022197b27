package route

import (
	"fmt"
	"testing"
)

// benchTable has n exact hosts with 10 paths each, a wildcard host per 100
// hosts and a catch-all host: the size issue #2 asks lookups to be measured at.
func benchTable(n int) *Table {
	hosts := make([]*VirtualHost, 0, n+n/100+1)
	for i := range n {
		routes := make([]*Route, 0, 10)
		for j := range 9 {
			routes = append(routes, rt(PathPrefix, fmt.Sprintf("/svc%d/api/v%d", j, j), fmt.Sprintf("b%d-%d", i, j)))
		}
		routes = append(routes, rt(PathExact, "/login", fmt.Sprintf("login%d", i)))
		hosts = append(hosts, NewVirtualHost(fmt.Sprintf("host%d.example.com", i), routes))
	}
	for i := range n / 100 {
		hosts = append(hosts, NewVirtualHost(fmt.Sprintf("*.zone%d.example.net", i), []*Route{rt(PathPrefix, "/", "wild")}))
	}
	hosts = append(hosts, NewVirtualHost("", []*Route{rt(PathPrefix, "/healthz", "any")}))
	return NewTable(hosts, &Route{Backends: Single(be("default"))})
}

func BenchmarkLookup(b *testing.B) {
	tbl := benchTable(10000)
	cases := []struct{ name, host, path string }{
		{"exact-host-prefix", "host4242.example.com", "/svc7/api/v7/users/42"},
		{"exact-host-exact-path", "host4242.example.com", "/login"},
		{"host-with-port", "host4242.example.com:8443", "/svc3/api/v3"},
		{"wildcard", "shop.zone42.example.net", "/cart/items"},
		{"catch-all", "unknown.example.org", "/healthz"},
		{"default", "unknown.example.org", "/nothing/at/all"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if tbl.Lookup(c.host, c.path, nil) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

func BenchmarkNewTable(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = benchTable(10000)
	}
}
