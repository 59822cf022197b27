// Package pipeline decides, once per request and for every engine, what
// happens to it: answered by the proxy itself, forwarded to an endpoint
// with edits to its head and settings for the forward, or handed off to
// another engine that can carry it. Engines (the HTTP/1.1 fast path, the
// net/http adapter for HTTP/1.1 and HTTP/2) read a request head, call
// Listener.Decide, and carry out the decision; none of them implements a
// policy itself, so a policy written once holds on every engine.
//
// Where it sits in the flow:
//
//	engine (reads the head) -> Listener.Decide(*Exchange):
//	    listener policies: request ID, forwarding fields and trusted proxies,
//	        ACME challenge, 421, HSTS, the 400/405 gate
//	    route lookup (the host's redirect to HTTPS, else 404): route.Table.Lookup
//	    route policies: from-to-www, app-root, permanent/temporal redirect,
//	        rewrite, redirect to HTTPS, settings (timeouts, retries),
//	        body limit (413), then Options.Policies
//	    backend choice, endpoint pick (503): upstream.Cluster.Pick
//	-> engine: Reply (local answer) | forward with Req/Resp edits and Settings
//
// A Policy is one small type, one file each: listener policies are chosen
// by ListenerOptions, route policies compiled from the route's data when a
// table is swapped in (Pipeline.Swap). A Head is read through a small
// interface both engines implement without allocating.
package pipeline
