package controller

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// BackendTLSPolicies: a policy that targets a Service (or one port of it,
// by sectionName) makes the backends of Gateway API routes to it speak
// TLS, verifying the endpoints' certificates against its CA certificates
// (ConfigMaps' ca.crt, or the system's roots) for its hostname (also the
// SNI), or for its subjectAltNames. The oldest policy of a target wins;
// the others are not Accepted there (Conflicted). A policy that cannot be
// honoured as written makes its targets' backends answer 500: never
// unverified TLS, never plain HTTP. Ingresses are not affected (their
// proxy-ssl-* annotations are).

// backendTLSState is one BackendTLSPolicy while it is translated.
type backendTLSState struct {
	p   *gatewayv1.BackendTLSPolicy
	src source
	// tls is what backends to its targets speak; nil when the policy
	// cannot be honoured (why says so).
	tls *route.BackendTLS
	why string
	// The policy's own conditions, but for its ancestors.
	accepted, resolved metav1.Condition
}

// backendTLSTarget is what a policy targets: a Service, or one port of it
// (section, the port's name).
type backendTLSTarget struct {
	service types.NamespacedName
	section string
}

// backendTLSPolicies translates the policies of snap, oldest first: their
// validation, and which of them holds each target.
func (t *gatewayTranslation) backendTLSPolicies(snap *Snapshot) {
	t.btls = make(map[backendTLSTarget]*backendTLSState)
	t.btlsUsers = make(map[types.NamespacedName][]*gatewayState)
	for _, p := range sortedByAge(snap.BackendTLSPolicies, func(p *gatewayv1.BackendTLSPolicy) *metav1.ObjectMeta { return &p.ObjectMeta }) {
		st := t.backendTLSPolicy(p)
		t.btlsAll = append(t.btlsAll, st)
		conflicted := false
		for _, ref := range p.Spec.TargetRefs {
			if ref.Group != "" || ref.Kind != "Service" {
				continue
			}
			k := backendTLSTarget{service: types.NamespacedName{Namespace: p.Namespace, Name: string(ref.Name)}}
			if ref.SectionName != nil {
				k.section = string(*ref.SectionName)
			}
			if _, taken := t.btls[k]; taken {
				conflicted = true
				continue
			}
			t.btls[k] = st
		}
		if conflicted && st.accepted.Status == metav1.ConditionTrue {
			st.accepted = condition(string(gatewayv1.PolicyConditionAccepted), false, string(gatewayv1.PolicyReasonConflicted),
				"an older BackendTLSPolicy targets the same Service and sectionName", p.Generation)
		}
	}
}

// backendTLSPolicy validates p into the TLS its targets' backends speak.
func (t *gatewayTranslation) backendTLSPolicy(p *gatewayv1.BackendTLSPolicy) *backendTLSState {
	src := source{kind: backendTLSPolicyKind, namespace: p.Namespace, name: p.Name}
	st := &backendTLSState{p: p, src: src}
	gen := p.Generation
	accepted, resolvedRefs := string(gatewayv1.PolicyConditionAccepted), string(gatewayv1.BackendTLSPolicyConditionResolvedRefs)
	st.accepted = condition(accepted, true, string(gatewayv1.PolicyReasonAccepted), "", gen)
	st.resolved = condition(resolvedRefs, true, string(gatewayv1.BackendTLSPolicyReasonResolvedRefs), "", gen)
	fail := func(why string) *backendTLSState {
		st.why = why
		t.b.problem(src, ReasonInvalidBackendTLS, why+"; the backends of the Services it targets answer 500")
		return st
	}
	v := &p.Spec.Validation
	h := sha256.New()
	fmt.Fprintf(h, "gateway|%s|", v.Hostname)
	var roots *x509.CertPool
	var authorities []byte
	valid := 0
	for _, ref := range v.CACertificateRefs {
		name := quoteShort(p.Namespace + "/" + string(ref.Name))
		if ref.Group != "" || ref.Kind != "ConfigMap" {
			st.resolved = condition(resolvedRefs, false, string(gatewayv1.BackendTLSPolicyReasonInvalidKind),
				fmt.Sprintf("CA certificate reference %s is a %s; only core ConfigMaps are supported", name, quoteShort(strings.TrimPrefix(string(ref.Group)+"/"+string(ref.Kind), "/"))), gen)
			continue
		}
		cm := t.b.cms[types.NamespacedName{Namespace: p.Namespace, Name: string(ref.Name)}]
		if cm == nil {
			st.resolved = condition(resolvedRefs, false, string(gatewayv1.BackendTLSPolicyReasonInvalidCACertificateRef), fmt.Sprintf("ConfigMap %s not found", name), gen)
			continue
		}
		if _, _, err := parseAuthorities([]byte(cm.Data["ca.crt"])); err != nil {
			st.resolved = condition(resolvedRefs, false, string(gatewayv1.BackendTLSPolicyReasonInvalidCACertificateRef),
				fmt.Sprintf("ConfigMap %s: %v", name, err), gen)
			continue
		}
		valid++
		authorities = append(append(authorities, cm.Data["ca.crt"]...), '\n')
	}
	if valid > 0 {
		roots, _, _ = parseAuthorities(authorities)
		h.Write(authorities)
	}
	switch {
	case v.WellKnownCACertificates != nil && *v.WellKnownCACertificates == gatewayv1.WellKnownCACertificatesSystem:
		sys, err := x509.SystemCertPool()
		if err != nil {
			return fail(fmt.Sprintf("the system's CA certificates cannot be read (%v)", err))
		}
		roots = sys
		h.Write([]byte("|system"))
	case v.WellKnownCACertificates != nil:
		st.accepted = condition(accepted, false, string(gatewayv1.PolicyReasonInvalid),
			fmt.Sprintf("wellKnownCACertificates %s is not supported; Postern knows System", quoteShort(string(*v.WellKnownCACertificates))), gen)
		return fail("its wellKnownCACertificates is not System")
	case valid == 0:
		st.accepted = condition(accepted, false, string(gatewayv1.BackendTLSPolicyReasonNoValidCACertificate), "none of caCertificateRefs is a ConfigMap with CA certificates", gen)
		return fail("none of its caCertificateRefs is a ConfigMap with CA certificates")
	}
	bt := &route.BackendTLS{Verify: true, Depth: 100, ServerName: string(v.Hostname), SNI: true, RootCAs: roots,
		Source: "BackendTLSPolicy " + p.Namespace + "/" + p.Name}
	for _, san := range v.SubjectAltNames {
		switch san.Type {
		case gatewayv1.HostnameSubjectAltNameType:
			bt.SubjectAltNames = append(bt.SubjectAltNames, route.SubjectAltName{DNS: string(san.Hostname)})
		case gatewayv1.URISubjectAltNameType:
			bt.SubjectAltNames = append(bt.SubjectAltNames, route.SubjectAltName{URI: string(san.URI)})
		}
		fmt.Fprintf(h, "|%s=%s%s", san.Type, san.Hostname, san.URI)
	}
	bt.ID = hex.EncodeToString(h.Sum(nil)[:12])
	st.tls = bt
	return st
}

// backendTLSFor returns the policy that holds port (named portName) of
// Service svc, if one does: the one of that port, else the Service's.
func (t *gatewayTranslation) backendTLSFor(svc types.NamespacedName, portName string) *backendTLSState {
	if portName != "" {
		if st := t.btls[backendTLSTarget{service: svc, section: portName}]; st != nil {
			return st
		}
	}
	return t.btls[backendTLSTarget{service: svc}]
}

// usedBy records that a route attached to gs has a backend of Service
// svc: the policies targeting svc have gs as an ancestor.
func (t *gatewayTranslation) usedBy(svc types.NamespacedName, gs *gatewayState) {
	if !slices.Contains(t.btlsUsers[svc], gs) {
		t.btlsUsers[svc] = append(t.btlsUsers[svc], gs)
	}
}

// backendTLSResults returns the status of every policy with an ancestor
// of ours: each Gateway of ours with a route to a Service it targets.
func (t *gatewayTranslation) backendTLSResults() []PolicyResult {
	var out []PolicyResult
	ctrl := gatewayv1.GatewayController(t.opts.gatewayControllerName())
	for _, st := range t.btlsAll {
		var gws []*gatewayState
		for _, ref := range st.p.Spec.TargetRefs {
			for _, gs := range t.btlsUsers[types.NamespacedName{Namespace: st.p.Namespace, Name: string(ref.Name)}] {
				if !slices.Contains(gws, gs) {
					gws = append(gws, gs)
				}
			}
		}
		if len(gws) == 0 {
			continue
		}
		res := PolicyResult{Namespace: st.p.Namespace, Name: st.p.Name}
		for _, gs := range gws {
			ns := gatewayv1.Namespace(gs.gw.Namespace)
			res.Ancestors = append(res.Ancestors, gatewayv1.PolicyAncestorStatus{
				AncestorRef: gatewayv1.ParentReference{
					Group: ptr.To(gatewayv1.Group(gatewayGroup)), Kind: ptr.To(gatewayv1.Kind(gatewayKind)),
					Namespace: &ns, Name: gatewayv1.ObjectName(gs.gw.Name),
				},
				ControllerName: ctrl,
				Conditions:     []metav1.Condition{st.accepted, st.resolved},
			})
		}
		out = append(out, res)
	}
	return out
}

// gatewayBackendCert resolves gs's spec.tls.backend.clientCertificateRef:
// the certificate Postern presents to the backends its routes speak TLS to
// through a BackendTLSPolicy. It sets the Gateway's ResolvedRefs condition
// (False, InvalidClientCertificateRef or RefNotPermitted, when it cannot be
// used: its backends then get no client certificate; the Gateway stays
// Accepted, as the spec asks).
func (t *gatewayTranslation) gatewayBackendCert(gs *gatewayState) {
	tlsCfg := gs.gw.Spec.TLS
	if tlsCfg == nil || tlsCfg.Backend == nil || tlsCfg.Backend.ClientCertificateRef == nil {
		return
	}
	ref := tlsCfg.Backend.ClientCertificateRef
	group, kind, ns := refParts(ref.Group, ref.Kind, ref.Namespace, "Secret", gs.gw.Namespace)
	shown := quoteShort(ns + "/" + string(ref.Name))
	resolved := string(gatewayv1.GatewayConditionResolvedRefs)
	gen := gs.gw.Generation
	fail := func(reason, msg string) {
		c := condition(resolved, false, reason, msg, gen)
		gs.backendRefs = &c
		t.b.problem(gs.src, ReasonInvalidSecret, msg+"; the Gateway's backends get no client certificate")
	}
	switch {
	case group != "" || kind != "Secret":
		fail(string(gatewayv1.GatewayReasonInvalidClientCertificateRef),
			fmt.Sprintf("client certificate reference %s is a %s; only core Secrets are supported", shown, quoteShort(strings.TrimPrefix(group+"/"+kind, "/"))))
		return
	case ns != gs.gw.Namespace && !t.granted(gatewayKind, gs.gw.Namespace, "", "Secret", ns, string(ref.Name)):
		fail(string(gatewayv1.GatewayReasonRefNotPermitted),
			fmt.Sprintf("Secret %s is in another namespace and no ReferenceGrant there allows Gateways of namespace %s to use it", shown, quoteShort(gs.gw.Namespace)))
		return
	}
	res := t.b.certificate(ns, string(ref.Name))
	if res.reason != "" || res.cert == nil || res.cert.Cert == nil {
		msg := res.msg
		if msg == "" {
			msg = fmt.Sprintf("Secret %s holds no certificate", shown)
		}
		fail(string(gatewayv1.GatewayReasonInvalidClientCertificateRef), msg)
		return
	}
	c := condition(resolved, true, string(gatewayv1.GatewayReasonResolvedRefs), "", gen)
	gs.backendRefs = &c
	gs.backendCert = res.cert.Cert
	h := sha256.New()
	for _, der := range res.cert.Cert.Certificate {
		h.Write(der)
	}
	gs.backendCertID = hex.EncodeToString(h.Sum(nil)[:12])
}
