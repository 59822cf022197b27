package controller

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// migrateIngress is an Ingress shop/name with one rule for host, its
// paths ImplementationSpecific.
func migrateIngress(name, host string, ann map[string]string, paths ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: ann}}
	rule := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	pt := networkingv1.PathTypeImplementationSpecific
	for _, p := range paths {
		rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p, PathType: &pt,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{rule}
	return ing
}

// rowOf returns the row of annotation name; the test fails without one.
func rowOf(t *testing.T, name string) NginxAnnotation {
	t.Helper()
	r := nginxByName[name]
	if r == nil {
		t.Fatalf("no row for %s", name)
	}
	return r.NginxAnnotation
}

// firstUnsupported returns an annotation whose row is unsupported and not
// a snippet; "" when every one is served by now.
func firstUnsupported() string {
	for _, a := range NginxAnnotations() {
		if a.Status == NginxUnsupported && !isSnippet(a.Name) {
			return a.Name
		}
	}
	return ""
}

func TestNginxFindings(t *testing.T) {
	t.Parallel()
	const p = DefaultAnnotationsPrefix + "/"
	type want struct {
		status NginxStatus
		note   string // a part of the note
	}
	unsupportedRow := firstUnsupported()
	for _, tt := range []struct {
		name string
		ann  map[string]string
		// paths of the Ingress's rule; "/" when none.
		paths []string
		want  map[string]want // by full key; every finding must be here
	}{{
		name: "rows' status and note",
		ann:  map[string]string{p + "proxy-body-size": "8m", p + "configuration-snippet": "more_set_headers x;", "postern.dev/hsts": "true", "cert-manager.io/cluster-issuer": "le"},
		want: map[string]want{
			p + "proxy-body-size":       {rowOf(t, "proxy-body-size").Status, rowOf(t, "proxy-body-size").Note},
			p + "configuration-snippet": {NginxUnsupported, rowOf(t, "configuration-snippet").Note},
		},
	}, {
		name: "values Postern cannot honour",
		ann:  map[string]string{p + "backend-protocol": "FCGI", p + "enable-modsecurity": "true"},
		want: map[string]want{
			p + "backend-protocol":   {NginxUnsupported, `has the value "FCGI", which Postern does not support`},
			p + "enable-modsecurity": {NginxUnsupported, `has the value "true"`},
		},
	}, {
		name: "values Postern honours",
		ann:  map[string]string{p + "backend-protocol": "GRPC", p + "enable-modsecurity": "false"},
		want: map[string]want{
			p + "backend-protocol":   {rowOf(t, "backend-protocol").Status, rowOf(t, "backend-protocol").Note},
			p + "enable-modsecurity": {rowOf(t, "enable-modsecurity").Status, rowOf(t, "enable-modsecurity").Note},
		},
	}, {
		name: "an invalid tuning value falls back",
		ann:  map[string]string{p + "proxy-connect-timeout": "5s"},
		want: map[string]want{p + "proxy-connect-timeout": {rowOf(t, "proxy-connect-timeout").Status, `invalid value "5s"`}},
	}, {
		name:  "a regex RE2 cannot compile",
		ann:   map[string]string{p + "use-regex": "true"},
		paths: []string{"/(?!admin)(.*)", "/ok/(.*)"},
		want:  map[string]want{p + "use-regex": {NginxUnsupported, `RE2 (no look-around, backreferences or possessive quantifiers) cannot compile "shop.example.com/(?!admin)(.*)", which`}},
	}, {
		name:  "regexes RE2 compiles",
		ann:   map[string]string{p + "use-regex": "true", p + "rewrite-target": "/$1"},
		paths: []string{"/api/(.*)"},
		want: map[string]want{
			p + "use-regex":      {rowOf(t, "use-regex").Status, rowOf(t, "use-regex").Note},
			p + "rewrite-target": {rowOf(t, "rewrite-target").Status, rowOf(t, "rewrite-target").Note},
		},
	}, {
		name:  "a look-around path without regex mode is a plain path",
		ann:   map[string]string{p + "use-regex": "false"},
		paths: []string{"/(?!admin)"},
		want:  map[string]want{p + "use-regex": {rowOf(t, "use-regex").Status, rowOf(t, "use-regex").Note}},
	}, {
		name: "unknown, removed and foreign keys",
		ann: map[string]string{
			p + "client-max-body-size": "8m", p + "secure-backends": "true",
			"nginx.org/proxy-connect-timeout": "5s", "nginx.com/sticky-cookie-services": "x",
			"ingress.kubernetes.io/ssl-redirect": "false", "ingress.kubernetes.io/": "x", "kubernetes.io/ingress.class": "nginx",
		},
		want: map[string]want{
			p + "client-max-body-size":           {NginxUnknown, "not an ingress-nginx annotation"},
			p + "secure-backends":                {NginxUnknown, "removed in ingress-nginx 0.21; use backend-protocol: HTTPS; ignored"},
			"nginx.org/proxy-connect-timeout":    {NginxUnknown, "NGINX Inc's controller (nginx.org/), not ingress-nginx; neither ingress-nginx nor Postern reads it; did you mean " + p + "proxy-connect-timeout?"},
			"nginx.com/sticky-cookie-services":   {NginxUnknown, "NGINX Inc's controller (nginx.com/)"},
			"ingress.kubernetes.io/ssl-redirect": {NginxUnknown, "did you mean " + p + "ssl-redirect?"},
			"kubernetes.io/ingress.class":        {NginxUnknown, "set spec.ingressClassName"},
		},
	}, {
		name: "alias and canonical name",
		ann:  map[string]string{p + "whitelist-source-range": "10.0.0.0/8", p + "allowlist-source-range": "10.0.0.0/8"},
		want: map[string]want{
			p + "whitelist-source-range": {NginxIgnored, p + "allowlist-source-range is also set and wins"},
			p + "allowlist-source-range": {rowOf(t, "allowlist-source-range").Status, rowOf(t, "allowlist-source-range").Note},
		},
	}, {
		name:  "a canary Ingress",
		ann:   map[string]string{p + "canary": "true", p + "canary-weight": "10", p + "use-regex": "true", p + "proxy-body-size": "8m"},
		paths: []string{"/(?!admin)"},
		want: map[string]want{
			p + "canary":          {rowOf(t, "canary").Status, rowOf(t, "canary").Note},
			p + "canary-weight":   {rowOf(t, "canary-weight").Status, rowOf(t, "canary-weight").Note},
			p + "use-regex":       {NginxIgnored, "on a canary Ingress only the canary and balancing annotations count"},
			p + "proxy-body-size": {NginxIgnored, "on a canary Ingress only"},
		},
	}, {
		name: "an empty value is not set",
		ann:  map[string]string{p + "upstream-vhost": " "},
		want: map[string]want{p + "upstream-vhost": {rowOf(t, "upstream-vhost").Status, "empty, which is not set"}},
	}, {
		name: "an unsupported row",
		ann:  map[string]string{p + unsupportedRow: "x"},
		want: map[string]want{p + unsupportedRow: {NginxUnsupported, nginxByName[unsupportedRow].Note}},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.HasSuffix(tt.name, "unsupported row") && unsupportedRow == "" {
				t.Skip("every annotation is served")
			}
			paths := tt.paths
			if paths == nil {
				paths = []string{"/"}
			}
			got := NginxFindings([]*networkingv1.Ingress{nil, migrateIngress("web", "shop.example.com", tt.ann, paths...)}, "")
			seen := make(map[string]bool)
			for _, f := range got {
				seen[f.Annotation] = true
				w, ok := tt.want[f.Annotation]
				switch {
				case !ok:
					t.Errorf("unexpected finding %+v", f)
				case f.Kind != FindingIngress || f.Namespace != "shop" || f.Ingress != "web" || f.Value != tt.ann[f.Annotation]:
					t.Errorf("finding %+v: wrong object or value", f)
				case f.Status != w.status || !strings.Contains(f.Note, w.note):
					t.Errorf("%s: status %s, note %q; want %s, a note with %q", f.Annotation, f.Status, f.Note, w.status, w.note)
				}
			}
			for k := range tt.want {
				if !seen[k] {
					t.Errorf("no finding for %s", k)
				}
			}
		})
	}
}

// TestNginxFindingsAcrossIngresses: regex mode is the host's, so a path of
// another Ingress on the host that RE2 cannot compile is reported on the
// annotation that turns it on; and findings come sorted, with a custom
// prefix.
func TestNginxFindingsAcrossIngresses(t *testing.T) {
	t.Parallel()
	const prefix = "example.com"
	regex := migrateIngress("b-regex", "Shop.Example.com", map[string]string{prefix + "/rewrite-target": "/$1", prefix + "/upstream-vhost": "x.test"}, "/(.*)")
	plain := migrateIngress("a-plain", "shop.example.com", map[string]string{prefix + "/upstream-vhost": "y.test", DefaultAnnotationsPrefix + "/upstream-vhost": "z.test"}, `/(\w+)\1`)
	other := migrateIngress("c-other", "other.example.com", nil, "/(?=x)")
	got := NginxFindings([]*networkingv1.Ingress{regex, other, plain}, prefix)
	var order []string
	for _, f := range got {
		order = append(order, f.Ingress+" "+f.Annotation)
	}
	wantOrder := []string{"a-plain example.com/upstream-vhost", "b-regex example.com/rewrite-target", "b-regex example.com/upstream-vhost"}
	if strings.Join(order, "\n") != strings.Join(wantOrder, "\n") {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(wantOrder, "\n"))
	}
	if f := got[1]; f.Status != NginxUnsupported || !strings.Contains(f.Note, `"shop.example.com/(\\w+)\\1" (Ingress shop/a-plain)`) {
		t.Errorf("rewrite-target: %s %q; want unsupported, naming a-plain's path", f.Status, f.Note)
	}
	if f := got[0]; f.Status != rowOf(t, "upstream-vhost").Status {
		t.Errorf("a-plain's upstream-vhost: %s", f.Status)
	}
}

func TestIngressesOfClass(t *testing.T) {
	t.Parallel()
	name := func(n string) *string { return &n }
	withClass := func(n string, field *string, legacy string) *networkingv1.Ingress {
		ing := migrateIngress(n, "", nil)
		ing.Spec.IngressClassName = field
		if legacy != "" {
			ing.Annotations = map[string]string{annotationLegacyClass: legacy}
		}
		return ing
	}
	ings := []*networkingv1.Ingress{
		withClass("field", name("nginx"), ""), withClass("legacy", nil, "nginx"), withClass("none", nil, ""),
		withClass("empty-field", name(""), "nginx"), withClass("other", name("traefik"), "nginx"), nil,
	}
	class := func(n string, isDefault bool) *networkingv1.IngressClass {
		ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
		if isDefault {
			ic.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
		}
		return ic
	}
	for _, tt := range []struct {
		name    string
		classes []*networkingv1.IngressClass
		want    string
	}{
		{"no IngressClass", nil, "field legacy empty-field"},
		{"not the default", []*networkingv1.IngressClass{class("nginx", false), class("other", true)}, "field legacy empty-field"},
		{"the default", []*networkingv1.IngressClass{class("nginx", true)}, "field legacy none empty-field"},
	} {
		var got []string
		for _, ing := range IngressesOfClass(ings, tt.classes, "nginx") {
			got = append(got, ing.Name)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s: %v, want %s", tt.name, got, tt.want)
		}
	}
}

func TestNginxConfigMapFindings(t *testing.T) {
	t.Parallel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ingress-nginx", Name: "ingress-nginx-controller"}, Data: map[string]string{
		"use-forwarded-headers":        "true",
		"proxy-real-ip-cidr":           "10.0.0.0/8",
		"use-proxy-protocol":           "false",
		"proxy-body-size":              " 0 ",
		"server-name-hash-bucket-size": "128",
		"proxy-stream-timeout":         "600s",
		"global-auth-url":              "https://auth",
		"global-auth-snippet":          "x",
		"http-snippet":                 "server {}",
		"main-snippet":                 "",
		"no-such-key":                  "1",
	}}
	type want struct {
		status     NginxStatus
		flag, note string
	}
	wants := map[string]want{
		"use-forwarded-headers":        {NginxPartial, "--trusted-proxies", "only their X-Forwarded-* headers are believed"},
		"proxy-real-ip-cidr":           {NginxSupported, "--trusted-proxies", "the same list"},
		"use-proxy-protocol":           {NginxIgnored, "", noteSame},
		"proxy-body-size":              {NginxIgnored, "", noteSame},
		"server-name-hash-bucket-size": {NginxIgnored, "", noteNotApplicable},
		"proxy-stream-timeout":         {NginxIgnored, "", noteNotApplicable},
		"global-auth-url":              {NginxSupported, "--global-auth-url", "every Ingress without an auth-url"},
		"global-auth-snippet":          {NginxUnsupported, "", noteConfigSnippet},
		"http-snippet":                 {NginxUnsupported, "", noteConfigSnippet},
		"main-snippet":                 {NginxIgnored, "", noteSame},
		"no-such-key":                  {NginxUnknown, "", "not an ingress-nginx ConfigMap key Postern knows"},
	}
	got := NginxConfigMapFindings(cm)
	if len(got) != len(wants) {
		t.Errorf("%d findings, want %d", len(got), len(wants))
	}
	for i, f := range got {
		w := wants[f.Key]
		if i > 0 && got[i-1].Key >= f.Key {
			t.Errorf("findings not sorted by key: %s before %s", got[i-1].Key, f.Key)
		}
		if f.Kind != FindingConfigMap || f.Namespace != "ingress-nginx" || f.ConfigMap != "ingress-nginx-controller" || f.Value != cm.Data[f.Key] || f.Annotation != "" {
			t.Errorf("finding %+v: wrong object or value", f)
		}
		if f.Status != w.status || f.Flag != w.flag || !strings.Contains(f.Note, w.note) {
			t.Errorf("%s: %s %q %q; want %s %q, a note with %q", f.Key, f.Status, f.Flag, f.Note, w.status, w.flag, w.note)
		}
	}
	if NginxConfigMapFindings(nil) != nil {
		t.Error("no ConfigMap, findings")
	}
}

// TestNginxConfigTable checks the ConfigMap table: one row a key, snippet
// keys unsupported, and every flag it names a flag of the command line
// (cmd/postern/flags.go).
func TestNginxConfigTable(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "cmd", "postern", "flags.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := make(map[string]bool)
	for _, m := range regexp.MustCompile(`fs\.\w+\([^,"]*,? ?"([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1) {
		flags["--"+m[1]] = true
	}
	if !flags["--trusted-proxies"] || !flags["--http-addr"] {
		t.Fatalf("flags of flags.go not found: %v", flags)
	}
	seen := make(map[string]bool)
	for _, r := range nginxConfigTable {
		if seen[r.key] {
			t.Errorf("key %s has two rows", r.key)
		}
		seen[r.key] = true
		if r.flag != "" && !flags[r.flag] {
			t.Errorf("%s names %s, which is no flag of postern", r.key, r.flag)
		}
		if strings.HasSuffix(r.key, "-snippet") && r.status != NginxUnsupported {
			t.Errorf("snippet key %s is %s", r.key, r.status)
		}
		if r.note == "" || r.status == NginxUnknown {
			t.Errorf("%s: status %s, note %q", r.key, r.status, r.note)
		}
		if got := nginxConfigRowFor(strings.NewReplacer("*", "x").Replace(r.key)); got == nil {
			t.Errorf("%s: no row found for it", r.key)
		}
	}
}

func TestReadMigrationManifests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ingress.yaml", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, annotations: {nginx.ingress.kubernetes.io/proxy-body-size: 8m}}
spec: {ingressClassName: nginx, rules: [{host: a.test}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: plain}
data: {a: b}
`)
	write("sub/list.yaml", `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
  data: {use-forwarded-headers: "true"}
`)
	write("broken.yaml", "kind: [")
	in, problems, err := ReadMigrationManifests(dir, "ingress-nginx/ingress-nginx-controller")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Ingresses) != 1 || in.Ingresses[0].Namespace != "default" || in.ConfigMap == nil || in.ConfigMap.Data["use-forwarded-headers"] != "true" {
		t.Errorf("read %d Ingresses, ConfigMap %v", len(in.Ingresses), in.ConfigMap)
	}
	if len(problems) != 1 || problems[0].Name != "broken.yaml" {
		t.Errorf("problems: %v, want one for broken.yaml", problems)
	}
	if in, _, err := ReadMigrationManifests(dir, "default/plain"); err != nil || in.ConfigMap == nil || in.ConfigMap.Data["a"] != "b" {
		t.Errorf("a ConfigMap without a namespace: %v, %v", in.ConfigMap, err)
	}
	if in, _, err := ReadMigrationManifests(dir, ""); err != nil || in.ConfigMap != nil {
		t.Errorf("no ConfigMap asked for: %v, %v", in.ConfigMap, err)
	}
	if _, _, err := ReadMigrationManifests(dir, "ingress-nginx/missing"); !errors.Is(err, ErrConfigMapNotFound) {
		t.Errorf("a missing ConfigMap: %v", err)
	}
	if _, _, err := ReadMigrationManifests(dir, "no-namespace"); err == nil {
		t.Error("a ConfigMap name without a namespace was accepted")
	}
	if _, _, err := ReadMigrationManifests(filepath.Join(dir, "nope"), ""); err == nil {
		t.Error("a missing folder was accepted")
	}
}
