//go:build e2e

// Package e2e runs the postern binary against a real cluster (kube-apiserver,
// etcd, kube-controller-manager, kube-scheduler and two Nodes run by the test
// node agent; package test/testbed) and sends real HTTP requests through it.
// Run it with test/e2e/run.sh (make e2e), which sets up the network namespace
// it needs.
package e2e
