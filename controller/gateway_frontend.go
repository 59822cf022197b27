package controller

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// A Gateway's client certificate validation (spec.tls.frontend): the TLS
// handshakes of its HTTPS ports ask for a client certificate and refuse
// one that does not chain to the authorities of the port's validation
// (perPort, else default), or none (AllowValidOnly); AllowInsecureFallback
// lets any through, and says so in the Gateway's
// InsecureFrontendValidationMode condition. It needs the Gateway's own
// address (--gateway-addresses): on Postern's shared listeners it would
// hold for every Gateway, so an HTTPS listener that asks for it there is
// not served.

// frontendValidation resolves the client certificate validation of HTTPS
// listener l into l.clientValidation, or sets why it cannot be honoured
// (the listener is not Accepted then, and serves nothing).
func (t *gatewayTranslation) frontendValidation(l *listenerState) {
	fe := l.gw.gw.Spec.TLS
	if fe == nil || fe.Frontend == nil {
		return
	}
	v := fe.Frontend.Default.Validation
	for _, pp := range fe.Frontend.PerPort {
		if pp.Port == l.spec.Port {
			v = pp.TLS.Validation
		}
	}
	if v == nil {
		return
	}
	accepted, resolved := string(gatewayv1.ListenerConditionAccepted), string(gatewayv1.ListenerConditionResolvedRefs)
	refuse := func(reason, msg string) {
		l.setCond(resolved, false, reason, msg)
		l.setCond(accepted, false, string(gatewayv1.ListenerReasonNoValidCACertificate), "no CA certificate to validate client certificates with: "+msg)
		l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "client certificates cannot be validated as the Gateway asks")
		l.accepted = false
	}
	if !t.pooled() {
		l.setCond(accepted, false, string(gatewayv1.ListenerReasonUnsupportedValue),
			"client certificate validation (spec.tls.frontend) needs Gateways with addresses of their own (--gateway-addresses): on shared listeners it would hold for every Gateway")
		l.setCond(string(gatewayv1.ListenerConditionProgrammed), false, string(gatewayv1.ListenerReasonInvalid), "client certificates cannot be validated as the Gateway asks")
		l.accepted = false
		return
	}
	src := l.gw.src
	var authorities []byte
	var sources []string
	for _, ref := range v.CACertificateRefs {
		ns := src.namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = string(*ref.Namespace)
		}
		shown := quoteShort(ns + "/" + string(ref.Name))
		switch {
		case ref.Group != "" || ref.Kind != "ConfigMap":
			refuse(string(gatewayv1.ListenerReasonInvalidCACertificateKind),
				fmt.Sprintf("CA certificate reference %s is a %s; only core ConfigMaps are supported", shown, quoteShort(strings.TrimPrefix(string(ref.Group)+"/"+string(ref.Kind), "/"))))
			return
		case ns != src.namespace && !t.granted(gatewayKind, src.namespace, "", "ConfigMap", ns, string(ref.Name)):
			refuse(string(gatewayv1.ListenerReasonRefNotPermitted),
				fmt.Sprintf("ConfigMap %s is in another namespace and no ReferenceGrant there allows Gateways of namespace %s to use it", shown, quoteShort(src.namespace)))
			return
		}
		cm := t.b.cms[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
		if cm == nil {
			refuse(string(gatewayv1.ListenerReasonInvalidCACertificateRef), fmt.Sprintf("ConfigMap %s not found", shown))
			return
		}
		if _, _, err := parseAuthorities([]byte(cm.Data["ca.crt"])); err != nil {
			refuse(string(gatewayv1.ListenerReasonInvalidCACertificateRef), fmt.Sprintf("ConfigMap %s: %v", shown, err))
			return
		}
		authorities = append(append(authorities, cm.Data["ca.crt"]...), '\n')
		sources = append(sources, ns+"/"+string(ref.Name))
	}
	if len(sources) == 0 {
		refuse(string(gatewayv1.ListenerReasonInvalidCACertificateRef), "caCertificateRefs is empty")
		return
	}
	pool, subjects, _ := parseAuthorities(authorities)
	l.clientValidation = &route.ClientValidation{
		Source:           "ConfigMap " + strings.Join(sources, ", "),
		InsecureFallback: v.Mode == gatewayv1.AllowInsecureFallback,
		Authorities:      subjects,
		Pool:             pool,
	}
	l.clientValidationID = fmt.Sprintf("%x", sha256.Sum256(authorities))
}
