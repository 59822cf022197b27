package controller

import "fmt"

// Problem is one thing that is wrong with one object: what Build could not
// serve and why. The caller turns it into a Kubernetes Event on the object,
// a log line and a metric; the rest of the table is built regardless.
type Problem struct {
	// Kind of the object ("Ingress", "Service", "Secret", ...).
	Kind string `json:"kind"`
	// Namespace of the object; empty for cluster-scoped objects.
	Namespace string `json:"namespace,omitempty"`
	// Name of the object.
	Name string `json:"name"`
	// Reason is a short CamelCase cause, used as the Event reason and as a
	// metric label (a bounded set, see the Reason constants).
	Reason string `json:"reason"`
	// Message says what is wrong and what happens instead, for a person.
	Message string `json:"message"`
}

// String formats the problem for logs and test failures.
func (p Problem) String() string {
	return fmt.Sprintf("%s %s/%s: %s: %s", p.Kind, p.Namespace, p.Name, p.Reason, p.Message)
}

// Reasons a Problem can have. They are a closed set so that they can be
// metric labels.
const (
	ReasonServiceNotFound = "ServiceNotFound"
	// ReasonRefNotPermitted: a Gateway API reference to another
	// namespace that no ReferenceGrant allows.
	ReasonRefNotPermitted = "RefNotPermitted"
	// ReasonUnsupportedFilter: a Gateway API route filter Postern cannot
	// carry out as written; the rule answers 500.
	ReasonUnsupportedFilter   = "UnsupportedFilter"
	ReasonPortNotFound        = "PortNotFound"
	ReasonUnsupportedBackend  = "UnsupportedBackend"
	ReasonInvalidHost         = "InvalidHost"
	ReasonInvalidPath         = "InvalidPath"
	ReasonInvalidAnnotation   = "InvalidAnnotation"
	ReasonConflict            = "Conflict"
	ReasonNoBackend           = "NoBackend"
	ReasonInvalidManifest     = "InvalidManifest"
	ReasonSecretNotFound      = "SecretNotFound"
	ReasonInvalidSecret       = "InvalidSecret"
	ReasonUnsupportedPathType = "UnsupportedPathType"
	ReasonACMEUnavailable     = "ACMEUnavailable"
	ReasonSnippetRefused      = "SnippetRefused"
	// ReasonUnsupportedAnnotation: an ingress-nginx annotation (or one of
	// its values) Postern does not support; the Ingress answers 503.
	ReasonUnsupportedAnnotation = "UnsupportedAnnotation"
	// ReasonCanaryNotServed: an ingress-nginx canary Ingress (or one of
	// its paths) is not attached to a mainline; the mainline serves all.
	ReasonCanaryNotServed = "CanaryNotServed"
	// ReasonInvalidBackendTLS: a BackendTLSPolicy that cannot be
	// honoured; the backends of its targets answer 500.
	ReasonInvalidBackendTLS = "InvalidBackendTLS"
)
