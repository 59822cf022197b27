package controller

import (
	"sync"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// EventReporter turns Problems into Kubernetes Events (events.k8s.io) on
// the objects they are about. Each problem is posted once when it appears,
// not on every rebuild, so a broken Ingress does not produce an Event storm;
// only the leader posts, so N replicas do not post N copies.
type EventReporter struct {
	recorder events.EventRecorder
	leading  func() bool

	mu     sync.Mutex
	posted map[Problem]bool
}

// NewEventReporter returns a reporter posting through recorder. leading
// (may be nil: always) says whether this replica should post.
func NewEventReporter(recorder events.EventRecorder, leading func() bool) *EventReporter {
	return &EventReporter{recorder: recorder, leading: leading, posted: make(map[Problem]bool)}
}

// NewEventBroadcaster returns a broadcaster writing events.k8s.io Events and
// a recorder on it that reports as controllerClass. The caller starts the
// broadcaster (StartRecordingToSinkWithContext) and shuts it down.
func NewEventBroadcaster(client kubernetes.Interface, controllerClass string) (events.EventBroadcaster, events.EventRecorder) {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	return b, b.NewRecorder(scheme.Scheme, controllerClass)
}

// maxNote is the API's limit on an Event's note.
const maxNote = 1024

// Sync posts an Event for every problem not posted yet and forgets the
// problems that are gone, so that one that comes back is posted again.
// Problems about objects that are not in the snapshot (a manifest file) are
// skipped.
func (r *EventReporter) Sync(s Snapshot, problems []Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leading != nil && !r.leading() {
		// A new leader posts the current problems afresh.
		clear(r.posted)
		return
	}
	current := make(map[Problem]bool, len(problems))
	var refs map[objKey]*corev1.ObjectReference
	for _, p := range problems {
		current[p] = true
		if r.posted[p] {
			continue
		}
		if refs == nil {
			refs = objectRefs(s)
		}
		ref := refs[objKey{p.Kind, p.Namespace, p.Name}]
		if ref == nil {
			continue
		}
		r.recorder.Eventf(ref, nil, corev1.EventTypeWarning, p.Reason, "Route", "%s", truncateNote(p.Message))
	}
	r.posted = current
}

type objKey struct{ kind, namespace, name string }

func objectRefs(s Snapshot) map[objKey]*corev1.ObjectReference {
	refs := make(map[objKey]*corev1.ObjectReference)
	add := func(kind, apiVersion, ns, name string, uid types.UID, rv string) {
		refs[objKey{kind, ns, name}] = &corev1.ObjectReference{
			Kind: kind, APIVersion: apiVersion, Namespace: ns, Name: name, UID: uid, ResourceVersion: rv,
		}
	}
	for _, o := range s.Ingresses {
		add("Ingress", "networking.k8s.io/v1", o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.IngressClasses {
		add("IngressClass", "networking.k8s.io/v1", "", o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.Services {
		add("Service", "v1", o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.Secrets {
		add("Secret", "v1", o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.EndpointSlices {
		add("EndpointSlice", "discovery.k8s.io/v1", o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	gv := gatewayv1.GroupVersion.String()
	for _, o := range s.GatewayClasses {
		add("GatewayClass", gv, "", o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.Gateways {
		add(gatewayKind, gv, o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.HTTPRoutes {
		add(httpRouteKind, gv, o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.GRPCRoutes {
		add(grpcRouteKind, gv, o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	for _, o := range s.BackendTLSPolicies {
		add(backendTLSPolicyKind, gv, o.Namespace, o.Name, o.UID, o.ResourceVersion)
	}
	return refs
}

func truncateNote(s string) string {
	if len(s) <= maxNote {
		return s
	}
	s = s[:maxNote-3]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}
