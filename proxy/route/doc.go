// Package route is the routing table Postern serves: the intermediate
// representation between the controller, which builds it from Kubernetes
// objects, and the proxy, which looks requests up in it.
//
// A Table is an immutable value. The controller builds a new one for every
// change and the proxy swaps it in atomically; nothing in this package locks,
// logs or knows about Kubernetes. Lookups are precomputed at build time so
// that matching a request does not allocate.
//
// A Route is a Match (path, and optionally method, header fields and query
// parameters, with the Gateway API's precedence), a Policy (per-request
// settings: retries, timeouts, body limit) and weighted Backends; a
// Backend is only what belongs to a Service port (endpoints, protocol,
// balancer, connect timeout), so routes with different policies share one
// backend's balancer, health and metrics.
//
// Where a host is matched: Table.Lookup (lookup.go). Where a path and the
// conditions are matched: VirtualHost.Match (match.go).
package route
