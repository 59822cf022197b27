// Package upstream is the proxy's side towards the endpoints, shared by
// every engine (the HTTP/1.1 fast path, the net/http adapter, and later
// HTTP/2): the endpoint pick by a backend's balancer, the count of
// requests in flight, passive health, the connection pools per endpoint,
// the retry decision and the mapping of a failed forward to the status the
// client gets.
//
// Where it sits in the flow:
//
//	pipeline.Decide --Pick--> Cluster --(engine sends the request)--> endpoint
//	                          Cluster.Failed / Retryable / Retry on failure, Classify for the answer
//
// State that must outlive a table swap (balancer positions, in-flight
// counts, health, pools) lives in the Cluster, keyed by backend key and
// endpoint address; Sync and SyncPatch carry it over to the table about to
// be served.
package upstream
