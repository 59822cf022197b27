// Package balancer picks the endpoint of a backend that a request is sent
// to.
//
// It sits at the end of the request path:
//
//	request -> listener -> table.Load() -> host -> route -> balancer -> endpoint -> backend
//
// The proxy looks the request up in the routing table, asks the Registry for
// the Balancer of the route's backend and calls Pick with the backend's
// endpoints. Pick returning nil means no endpoint can serve the request and
// the proxy answers 503.
//
// A routing table is immutable and replaced on every change, so state that
// must outlive a swap does not live in it: the round-robin position of a
// backend and the number of requests in flight to an endpoint live here, in
// a Registry (keyed by backend key and policy) and an InFlight tracker
// (keyed by endpoint address) that the proxy owns. Registry.Sync, called
// when a table is swapped in, forgets what the new table no longer uses.
//
// Every policy is in a file of its own (roundrobin.go, leastrequest.go) and
// is built by name through New. Picking never allocates.
package balancer
