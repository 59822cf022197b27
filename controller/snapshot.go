package controller

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Snapshot is every object Build reads, taken at one moment. Sources fill it
// from informers' listers or from a folder of manifests; Build never changes
// it. The order of the slices does not matter: Build sorts what it needs.
type Snapshot struct {
	// Ingresses of every class; Build keeps the ones that are ours.
	Ingresses []*networkingv1.Ingress
	// IngressClasses decide which Ingresses are ours.
	IngressClasses []*networkingv1.IngressClass
	// Services resolve Ingress backends to ports.
	Services []*corev1.Service
	// EndpointSlices give the addresses behind each Service.
	EndpointSlices []*discoveryv1.EndpointSlice
	// Secrets hold TLS certificates.
	Secrets []*corev1.Secret
}

// Options are the settings Build needs from the command line.
type Options struct {
	// IngressClass is the IngressClass name Postern serves (--ingress-class).
	// Empty means "postern".
	IngressClass string
	// ControllerClass is the spec.controller value of IngressClasses that
	// belong to Postern (--controller-class). Empty means
	// "postern.dev/ingress-controller".
	ControllerClass string
}

// Defaults for Options.
const (
	DefaultIngressClass    = "postern"
	DefaultControllerClass = "postern.dev/ingress-controller"
)
