package controller

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
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
	// Secrets hold TLS certificates, basic auth users.
	Secrets []*corev1.Secret
	// ConfigMaps hold what some ingress-nginx annotations name
	// (custom-headers, auth-proxy-set-headers).
	ConfigMaps []*corev1.ConfigMap
	// Namespaces give the labels a Gateway listener's allowedRoutes
	// selector matches.
	Namespaces []*corev1.Namespace

	// The Gateway API objects: Build keeps the GatewayClasses whose
	// controllerName is ours, their Gateways and the routes attached.
	GatewayClasses []*gatewayv1.GatewayClass
	Gateways       []*gatewayv1.Gateway
	HTTPRoutes     []*gatewayv1.HTTPRoute
	GRPCRoutes     []*gatewayv1.GRPCRoute
	// BackendTLSPolicies say how to speak TLS to the Services they
	// target.
	BackendTLSPolicies []*gatewayv1.BackendTLSPolicy
	ReferenceGrants    []*gatewayv1.ReferenceGrant
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
	// DefaultCertificate is "namespace/name" of the TLS Secret served when
	// no other certificate fits (--default-ssl-certificate); empty means
	// the proxy's self-signed one.
	DefaultCertificate string `json:"defaultCertificate,omitempty"`
	// Now is the time certificates are checked against (expired, not yet
	// valid). Build reads no clock: the caller passes it.
	Now time.Time
	// ACME is true when an ACME issuer is configured (--acme-directory is
	// not empty). When false, Ingresses that ask for ACME get a Problem and
	// their hosts are served the default certificate.
	ACME bool
	// AnnotationsPrefix is the prefix of the ingress-nginx annotations
	// (--annotations-prefix, as ingress-nginx's flag); empty means
	// DefaultAnnotationsPrefix.
	AnnotationsPrefix string `json:"annotationsPrefix,omitempty"`
	// LimitStatusCode is the answer to a request a rate limit refuses
	// (--limit-status-code, ingress-nginx's limit-req-status-code and
	// limit-conn-status-code); zero means 503.
	LimitStatusCode int `json:"limitStatusCode,omitempty"`
	// GlobalAuth, when not nil, is the external auth of every Ingress
	// that has no auth-url of its own and does not turn it off with
	// enable-global-auth: "false" (--global-auth-url, ParseGlobalAuth).
	GlobalAuth *route.ExternalAuth `json:"globalAuth,omitempty"`
	// AllowedResponseHeaders, when not empty, are the only fields (in
	// canonical form) a custom-headers ConfigMap may set
	// (--global-allowed-response-headers, ingress-nginx's
	// global-allowed-response-headers).
	AllowedResponseHeaders []string `json:"allowedResponseHeaders,omitempty"`
	// SSLPassthrough turns ingress-nginx's ssl-passthrough on
	// (--enable-ssl-passthrough); without it the annotation is a Problem
	// and the host's TLS is terminated, as ingress-nginx does.
	SSLPassthrough bool `json:"sslPassthrough,omitempty"`
	// GatewayControllerName is the controllerName of the GatewayClasses
	// Postern serves (--gateway-controller-name); empty means
	// DefaultGatewayControllerName.
	GatewayControllerName string `json:"gatewayControllerName,omitempty"`
	// Certificates, when not nil, remembers parsed certificates across
	// builds so that an unchanged Secret is not parsed again. It never
	// changes what Build returns.
	Certificates *CertificateCache `json:"-"`
	// GatewayAddresses, when valid, is the pool Gateways get addresses
	// of their own from (--gateway-addresses): each listens there on its
	// listeners' ports, served from tables of its own
	// (route.Table.Listeners). The zero value: every Gateway shares
	// Postern's listeners.
	GatewayAddresses netip.Prefix `json:"gatewayAddresses,omitzero"`
}

// Defaults for Options.
const (
	DefaultIngressClass    = "postern"
	DefaultControllerClass = "postern.dev/ingress-controller"
	// DefaultAnnotationsPrefix is ingress-nginx's own.
	DefaultAnnotationsPrefix = "nginx.ingress.kubernetes.io"
)
