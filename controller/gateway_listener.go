package controller

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// The listeners of a Gateway of ours: their checks (protocol, port,
// hostname, route kinds, certificates, conflicts) and the TLS they claim.

// gateway checks the listeners of gw and claims the certificates of its
// HTTPS ones.
func (t *gatewayTranslation) gateway(gs *gatewayState) {
	gw := gs.gw
	t.gatewayBackendCert(gs)
	for i := range gw.Spec.Listeners {
		l := &listenerState{gw: gs, spec: &gw.Spec.Listeners[i], conds: make(map[string]metav1.Condition)}
		gs.listeners = append(gs.listeners, l)
		t.listener(l)
	}
	t.conflicts(gs)
	for _, l := range gs.listeners {
		if !l.accepted {
			continue
		}
		if t.pooled() && !gs.addr.IsValid() {
			l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonPending), "the Gateway has no address: "+gs.addrMsg)
			continue
		}
		if _, bad := l.conds[string(gatewayv1.ListenerConditionResolvedRefs)]; !bad {
			l.setCond(string(gatewayv1.ListenerConditionResolvedRefs), true, string(gatewayv1.ListenerReasonResolvedRefs), "")
		}
		if l.conds[string(gatewayv1.ListenerConditionResolvedRefs)].Status == metav1.ConditionTrue {
			l.setCond(string(gatewayv1.ListenerConditionProgrammed), true, string(gatewayv1.ListenerReasonProgrammed), "")
			l.serving = true
			t.portBuilder(gs, l.spec.Port) // a listener's port is served, routes or not
			t.claimTLS(l)
		} else {
			l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "the listener's references cannot be resolved")
		}
	}
}

// listener checks one listener: protocol, port, hostname, route kinds
// and, for HTTPS, its certificates.
func (t *gatewayTranslation) listener(l *listenerState) {
	accepted := string(gatewayv1.ListenerConditionAccepted)
	spec := l.spec
	switch spec.Protocol {
	case gatewayv1.HTTPProtocolType, gatewayv1.HTTPSProtocolType:
	default:
		l.setCond(accepted, false, string(gatewayv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported; Postern serves HTTP and HTTPS", quoteShort(string(spec.Protocol))))
		l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "the listener is not accepted")
		return
	}
	want := sharedHTTPPort
	if spec.Protocol == gatewayv1.HTTPSProtocolType {
		want = sharedHTTPSPort
	}
	if !t.pooled() && int(spec.Port) != want {
		l.setCond(accepted, false, string(gatewayv1.ListenerReasonPortUnavailable), fmt.Sprintf("Gateways share Postern's listeners: %s is served on port %d only", spec.Protocol, want))
		l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "the listener is not accepted")
		return
	}
	if spec.Hostname != nil && *spec.Hostname != "" {
		h, problem := normalizeHost(string(*spec.Hostname))
		if problem != "" {
			l.setCond(accepted, false, string(gatewayv1.ListenerReasonUnsupportedValue), problem)
			l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "the listener is not accepted")
			return
		}
		l.host = h
	}
	l.accepted = true
	l.setCond(accepted, true, string(gatewayv1.ListenerReasonAccepted), "")
	t.routeKinds(l)
	if spec.Protocol == gatewayv1.HTTPSProtocolType {
		t.listenerTLS(l)
		if l.accepted {
			t.frontendValidation(l)
		}
	}
}

// routeKinds sets the route kinds l takes: those of allowedRoutes.kinds
// that Postern serves (HTTPRoute, GRPCRoute), or both when it names none.
// A kind Postern does not serve is left out, with ResolvedRefs False.
func (t *gatewayTranslation) routeKinds(l *listenerState) {
	kind := func(k string) gatewayv1.RouteGroupKind {
		return gatewayv1.RouteGroupKind{Group: ptr.To(gatewayv1.Group(gatewayGroup)), Kind: gatewayv1.Kind(k)}
	}
	if l.spec.AllowedRoutes == nil || len(l.spec.AllowedRoutes.Kinds) == 0 {
		l.kinds = []gatewayv1.RouteGroupKind{kind(httpRouteKind), kind(grpcRouteKind)}
		return
	}
	l.kinds = []gatewayv1.RouteGroupKind{}
	var bad []string
	for _, k := range l.spec.AllowedRoutes.Kinds {
		group := gatewayGroup
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group == gatewayGroup && (k.Kind == httpRouteKind || k.Kind == grpcRouteKind) {
			if !slices.ContainsFunc(l.kinds, func(x gatewayv1.RouteGroupKind) bool { return x.Kind == k.Kind }) {
				l.kinds = append(l.kinds, kind(string(k.Kind)))
			}
			continue
		}
		bad = append(bad, quoteShort(group+"/"+string(k.Kind)))
	}
	if len(bad) > 0 {
		l.setCond(string(gatewayv1.ListenerConditionResolvedRefs), false, string(gatewayv1.ListenerReasonInvalidRouteKinds),
			fmt.Sprintf("route kinds %s are not supported; Postern serves %s/HTTPRoute and GRPCRoute", strings.Join(bad, ", "), gatewayGroup))
	}
}

// listenerTLS resolves the certificates of HTTPS listener l and claims
// TLS for its host with the first one; a listener without a hostname
// gives the table's default certificate, unless --default-ssl-certificate
// sets it.
func (t *gatewayTranslation) listenerTLS(l *listenerState) {
	resolved := string(gatewayv1.ListenerConditionResolvedRefs)
	tlsCfg := l.spec.TLS
	if tlsCfg == nil || len(tlsCfg.CertificateRefs) == 0 {
		l.setCond(resolved, false, string(gatewayv1.ListenerReasonInvalidCertificateRef), "an HTTPS listener needs tls.certificateRefs")
		return
	}
	if tlsCfg.Mode != nil && *tlsCfg.Mode != gatewayv1.TLSModeTerminate {
		l.setCond(string(gatewayv1.ListenerConditionAccepted), false, string(gatewayv1.ListenerReasonUnsupportedValue), "an HTTPS listener terminates TLS: tls.mode must be Terminate")
		l.accepted = false
		return
	}
	src := l.gw.src
	for _, ref := range tlsCfg.CertificateRefs {
		group, kind, ns := refParts(ref.Group, ref.Kind, ref.Namespace, "Secret", src.namespace)
		shown := quoteShort(ns + "/" + string(ref.Name))
		switch {
		case group != "" || kind != "Secret":
			l.setCond(resolved, false, string(gatewayv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("certificate reference %s is a %s; only core Secrets are supported", shown, quoteShort(strings.TrimPrefix(group+"/"+kind, "/"))))
			return
		case ns != src.namespace && !t.granted(gatewayKind, src.namespace, "", "Secret", ns, string(ref.Name)):
			l.setCond(resolved, false, string(gatewayv1.ListenerReasonRefNotPermitted), fmt.Sprintf("Secret %s is in another namespace and no ReferenceGrant there allows Gateways of namespace %s to use it", shown, quoteShort(src.namespace)))
			return
		}
		res := t.b.certificate(ns, string(ref.Name))
		if res.reason != "" {
			l.setCond(resolved, false, string(gatewayv1.ListenerReasonInvalidCertificateRef), res.msg)
			return
		}
		if l.cert == nil {
			l.cert, l.secret = res.cert, ns+"/"+string(ref.Name)
		}
	}
}

// claimTLS claims the certificate of HTTPS listener l, once it serves:
// for its host, or when it has none as the certificate of HTTPS requests
// no other fits (unless --default-ssl-certificate names one).
func (t *gatewayTranslation) claimTLS(l *listenerState) {
	src := l.gw.src
	b := t.portBuilder(l.gw, l.spec.Port)
	switch {
	case l.cert == nil:
	case l.host != "":
		b.claimTLSHost(src, &route.TLSHost{Host: l.host, Certificate: l.cert, Source: src.route()}, l.secret)
	case b.gatewayDefault == nil:
		b.gatewayDefault = l.cert
	}
}

// conflicts marks the valid listeners of gs that share a port with
// another valid one of a different protocol (ProtocolConflict) or of the
// same hostname (HostnameConflict): they are not served, and count as
// not valid.
func (t *gatewayTranslation) conflicts(gs *gatewayState) {
	protocols := make(map[gatewayv1.PortNumber]map[gatewayv1.ProtocolType]bool)
	hosts := make(map[string]int)
	for _, l := range gs.listeners {
		if !l.accepted {
			continue
		}
		if protocols[l.spec.Port] == nil {
			protocols[l.spec.Port] = make(map[gatewayv1.ProtocolType]bool)
		}
		protocols[l.spec.Port][l.spec.Protocol] = true
		hosts[fmt.Sprintf("%d/%s", l.spec.Port, l.host)]++
	}
	conflicted := string(gatewayv1.ListenerConditionConflicted)
	for _, l := range gs.listeners {
		switch {
		case !l.accepted:
			continue
		case len(protocols[l.spec.Port]) > 1:
			l.setCond(conflicted, true, string(gatewayv1.ListenerReasonProtocolConflict), fmt.Sprintf("another listener on port %d has another protocol", l.spec.Port))
		case hosts[fmt.Sprintf("%d/%s", l.spec.Port, l.host)] > 1:
			l.setCond(conflicted, true, string(gatewayv1.ListenerReasonHostnameConflict), fmt.Sprintf("another listener on port %d has the same hostname", l.spec.Port))
		default:
			l.setCond(conflicted, false, string(gatewayv1.ListenerReasonNoConflicts), "")
			continue
		}
		l.accepted = false
		l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "the listener conflicts with another")
	}
}
