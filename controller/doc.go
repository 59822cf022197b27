// Package controller turns Kubernetes objects into the routing table the
// proxy serves. It is the only package that imports client-go.
//
// The flow: a source (the cluster's informers, or a folder of manifests)
// produces a Snapshot value; Build, a pure function, translates it into a
// *route.Table and a list of Problems; the caller swaps the table into the
// proxy and reports each Problem as an Event, a log line and a metric.
// Cluster mode is wired here too (clustermode.go): Connect finds the
// cluster and builds the client, the ClusterSource and the leader
// election, and Cluster.Run watches, applies, posts Events and writes
// status, so that cmd/postern passes plain values and imports no client-go.
//
// Build is front ends feeding one table builder. A front end reads one API
// and knows its shape: the Ingress front end (ingress.go, ingress_class.go)
// picks the Ingresses of our class, orders them oldest first, reads their
// postern.dev annotations through a table of rows (annotations.go: one row
// a feature, its key, parse and what it sets) and turns rules, paths,
// default backends and spec.tls into claims. The table builder (build*.go)
// knows no front end's types: a claim names its object by a source (kind,
// namespace, name), and the builder owns what every front end shares. It
// settles route, default-route and TLS-host claims (first come, first
// served, so the oldest object wins; the loser gets a Problem), resolves
// backends from Services and EndpointSlices (shared by the routes with the
// same Service port and settings), resolves certificates from Secrets,
// collects the Problems and assembles the table. A Gateway API front end
// (HTTPRoute) is meant to be another caller of the same builder.
//
// `postern migrate` sits beside the flow: it reads Ingresses and
// ingress-nginx's ConfigMap (nginx_migrate_read.go) and reports, through
// the same ingress-nginx rows and readNginx that Build uses
// (nginx_migrate.go) and a table of ConfigMap keys (nginx_configmap.go),
// what Postern does with each annotation and key.
package controller
