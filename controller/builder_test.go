package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/postern-dev/postern/proxy/route"
)

// TestBuilderSources drives the table builder as a second front end would,
// with claims in the name of another kind: conflicts with an Ingress's
// claims are settled the same way, Problems name both kinds, a lost claim
// never resolves its backend, and backends are shared across front ends.
func TestBuilderSources(t *testing.T) {
	t.Parallel()
	snap := Snapshot{Services: []*corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}}}
	b := newBuilder(snap, Options{Now: goldenNow})
	ing := source{kind: "Ingress", namespace: "shop", name: "old"}
	hr := source{kind: "HTTPRoute", namespace: "shop", name: "new"}
	resolved := 0
	backend := func() *route.Backend {
		resolved++
		be, reason, _ := b.serviceBackend("shop", "web", servicePort{number: 80}, backendSettings{})
		if reason != "" {
			t.Errorf("backend: %s", reason)
		}
		return be
	}
	claim := routeClaim{host: "a.example.com", pathType: route.PathPrefix, path: "/x", shownPath: "/x", declaredType: "PathPrefix"}
	claim.src = ing
	b.claimRoute(claim, backend)
	claim.src = hr
	b.claimRoute(claim, backend)
	claim.path, claim.shownPath = "/y", "/y"
	b.claimRoute(claim, backend)
	b.claimDefault(ing, nil, backend)
	b.claimDefault(hr, nil, backend)
	b.claimTLS(ing, []string{"a.example.com"}, "", tlsSettings{})
	b.claimTLS(hr, []string{"a.example.com"}, "tls", tlsSettings{})
	if resolved != 3 {
		t.Errorf("backends resolved %d times, want 3 (the claims won)", resolved)
	}
	tbl, problems := b.finish()

	want := []Problem{
		{Kind: "HTTPRoute", Namespace: "shop", Name: "new", Reason: ReasonConflict, Message: "TLS for host a.example.com is already configured by Ingress shop/old with the default certificate; this HTTPRoute's TLS for it is ignored"},
		{Kind: "HTTPRoute", Namespace: "shop", Name: "new", Reason: ReasonConflict, Message: "host a.example.com path /x (PathPrefix, matched as Prefix) is already served by Ingress shop/old; it is not served from this HTTPRoute"},
		{Kind: "HTTPRoute", Namespace: "shop", Name: "new", Reason: ReasonConflict, Message: "the default backend is already set by Ingress shop/old; this HTTPRoute's default backend is ignored"},
		{Kind: "HTTPRoute", Namespace: "shop", Name: "new", Reason: ReasonSecretNotFound, Message: `TLS Secret "tls" not found in namespace "shop"; its hosts are served the default certificate`},
	}
	if !slices.Equal(problems, want) {
		t.Errorf("problems:\n got %v\nwant %v", problems, want)
	}
	vh := tbl.Host("a.example.com")
	if vh == nil || len(vh.Routes) != 2 {
		t.Fatalf("host a.example.com: %+v, want two routes", vh)
	}
	for _, r := range vh.Routes {
		if want := map[string]route.Source{"/x": ing.route(), "/y": hr.route()}[r.Path]; r.Source != want {
			t.Errorf("route %s: source %v, want %v", r.Path, r.Source, want)
		}
		if r.First() != tbl.Default.First() || r.First().Key != "shop/web:80" {
			t.Errorf("route %s: backend %+v is not the shared shop/web:80", r.Path, r.First())
		}
	}
	if th := tbl.TLSHost("a.example.com"); th == nil || th.Source != ing.route() {
		t.Errorf("TLS host: %+v, want the Ingress's", th)
	}
}
