// Package controller turns Kubernetes objects into the routing table the
// proxy serves. It is the only package that imports client-go.
//
// The flow: a source (the cluster's informers, or a folder of manifests)
// produces a Snapshot value; Build, a pure function, translates it into a
// *route.Table and a list of Problems; the caller swaps the table into the
// proxy and reports each Problem as an Event, a log line and a metric.
package controller
