//go:build tools

// Package kube pins the kube-apiserver and kubectl the end-to-end tests build from the
// k8s.io/kubernetes module; it holds no code of its own.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
