//go:build tools

// Package kube pins the Kubernetes components the end-to-end tests build from the
// k8s.io/kubernetes module (API server, controller manager, scheduler, kubectl); it
// holds no code of its own.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
