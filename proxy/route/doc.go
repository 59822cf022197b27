// Package route is the routing table Postern serves: the intermediate
// representation between the controller, which builds it from Kubernetes
// objects, and the proxy, which looks requests up in it.
//
// A Table is an immutable value. The controller builds a new one for every
// change and the proxy swaps it in atomically; nothing in this package locks,
// logs or knows about Kubernetes. Lookups are precomputed at build time so
// that matching a request does not allocate.
//
// Where a host is matched: Table.Lookup (lookup.go). Where a path is matched:
// VirtualHost.Match (match.go).
package route
