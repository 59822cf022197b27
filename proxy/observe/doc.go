// Package observe records what the proxy serves: one Record per request,
// filled by whichever engine served it (the HTTP/1.1 fast path, net/http's
// HTTP/1.1 and HTTP/2 servers), handed to a Sink that feeds the Prometheus
// metrics (metrics.go) and the access log (accesslog.go).
//
// Where it sits in the flow:
//
//	engine -> pipeline.Decide -> upstream -> response ends -> Sink.Done(*Record)
//	                                                          -> Metrics, AccessLog
//
// Nothing here is on a request's critical path beyond a few map lookups
// and atomic adds: metric children are resolved once per label set, and an
// access-log line is a small record queued for a writer goroutine of its
// own, dropped (and counted) when the writer falls behind.
package observe
