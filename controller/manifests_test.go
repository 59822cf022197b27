package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// manifestService is a small valid Service document.
func manifestService(name string) string {
	return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n  ports:\n  - name: http\n    port: 80\n"
}

// writeManifestFiles writes files (path relative to dir -> content) into dir;
// an empty content removes the file.
func writeManifestFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		if content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// manifestKeys lists a snapshot's objects as "Kind namespace/name", kind by
// kind, in the snapshot's order.
func manifestKeys(s Snapshot) []string {
	var keys []string
	for _, o := range s.Ingresses {
		keys = append(keys, "Ingress "+o.Namespace+"/"+o.Name)
	}
	for _, o := range s.IngressClasses {
		keys = append(keys, "IngressClass "+o.Namespace+"/"+o.Name)
	}
	for _, o := range s.Services {
		keys = append(keys, "Service "+o.Namespace+"/"+o.Name)
	}
	for _, o := range s.EndpointSlices {
		keys = append(keys, "EndpointSlice "+o.Namespace+"/"+o.Name)
	}
	for _, o := range s.Secrets {
		keys = append(keys, "Secret "+o.Namespace+"/"+o.Name)
	}
	return keys
}

func manifestProblemStrings(problems []Problem) []string {
	var out []string
	for _, p := range problems {
		out = append(out, p.String())
	}
	return out
}

// manifestDiff returns "" when got equals want, else both, line by line.
func manifestDiff(got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	var b strings.Builder
	b.WriteString("got:\n")
	for _, l := range got {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	b.WriteString("want:\n")
	for _, l := range want {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	return b.String()
}

func TestManifestSourceLoadFixture(t *testing.T) {
	snap, problems, err := NewManifestSource("testdata/manifests/site", zaptest.NewLogger(t)).Load()
	if err != nil {
		t.Fatal(err)
	}
	if d := manifestDiff(manifestProblemStrings(problems), nil); d != "" {
		t.Errorf("problems:\n%s", d)
	}
	// Files in path order (apps/api/ingress.yml, apps/api/list.json,
	// site.yaml); hidden, backup and autosave files are not read.
	want := []string{
		"Ingress default/api",
		"Ingress shop/web",
		"IngressClass /postern",
		"Service default/api",
		"Service shop/web",
		"EndpointSlice default/api-1",
		"EndpointSlice shop/web-1",
		"Secret shop/web-tls",
	}
	if d := manifestDiff(manifestKeys(snap), want); d != "" {
		t.Fatalf("objects:\n%s", d)
	}

	t.Run("Ingress", func(t *testing.T) {
		ing := snap.Ingresses[1]
		if got := ing.GroupVersionKind().String(); got != "networking.k8s.io/v1, Kind=Ingress" {
			t.Errorf("GVK = %s", got)
		}
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "postern" {
			t.Errorf("ingressClassName = %v", ing.Spec.IngressClassName)
		}
		if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "web-tls" || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{"www.example.com"}) {
			t.Errorf("tls = %+v", ing.Spec.TLS)
		}
		if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "www.example.com" || ing.Spec.Rules[0].HTTP == nil {
			t.Fatalf("rules = %+v", ing.Spec.Rules)
		}
		p := ing.Spec.Rules[0].HTTP.Paths[0]
		if p.Path != "/" || p.PathType == nil || *p.PathType != networkingv1.PathTypePrefix ||
			p.Backend.Service == nil || p.Backend.Service.Name != "web" || p.Backend.Service.Port.Name != "http" {
			t.Errorf("path = %+v", p)
		}
		api := snap.Ingresses[0].Spec.Rules[0].HTTP.Paths[0]
		if *api.PathType != networkingv1.PathTypeExact || api.Backend.Service.Port.Number != 8080 {
			t.Errorf("api path = %+v", api)
		}
	})
	t.Run("IngressClass is cluster-scoped", func(t *testing.T) {
		ic := snap.IngressClasses[0]
		if ic.Namespace != "" || ic.Spec.Controller != DefaultControllerClass {
			t.Errorf("IngressClass = %s/%s controller %q", ic.Namespace, ic.Name, ic.Spec.Controller)
		}
	})
	t.Run("Service", func(t *testing.T) {
		web := snap.Services[1]
		want := []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}
		if !slices.Equal(web.Spec.Ports, want) || web.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("web = %s %+v", web.Spec.Type, web.Spec.Ports)
		}
		// From the List in JSON: TypeMeta set, targetPort defaulted to port.
		api := snap.Services[0]
		want = []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}}
		if !slices.Equal(api.Spec.Ports, want) || api.Kind != "Service" || api.APIVersion != "v1" {
			t.Errorf("api = %+v %+v", api.TypeMeta, api.Spec.Ports)
		}
	})
	t.Run("EndpointSlice", func(t *testing.T) {
		es := snap.EndpointSlices[1]
		if es.Labels[discoveryv1.LabelServiceName] != "web" || es.AddressType != discoveryv1.AddressTypeIPv4 {
			t.Errorf("slice = %+v", es.ObjectMeta)
		}
		if len(es.Endpoints) != 1 || !slices.Equal(es.Endpoints[0].Addresses, []string{"192.0.2.10"}) ||
			es.Endpoints[0].Conditions.Ready == nil || !*es.Endpoints[0].Conditions.Ready {
			t.Errorf("endpoints = %+v", es.Endpoints)
		}
		if len(es.Ports) != 1 || *es.Ports[0].Name != "http" || *es.Ports[0].Port != 8080 || *es.Ports[0].Protocol != corev1.ProtocolTCP {
			t.Errorf("ports = %+v", es.Ports)
		}
	})
	t.Run("Secret merges stringData into data", func(t *testing.T) {
		s := snap.Secrets[0]
		if s.Type != corev1.SecretTypeTLS || string(s.Data["tls.crt"]) != "cert" || string(s.Data["tls.key"]) != "key" || s.StringData != nil {
			t.Errorf("secret = %s %q %v", s.Type, s.Data, s.StringData)
		}
	})
}

func TestManifestSourceLoad(t *testing.T) {
	const tab = "\t"
	tests := []struct {
		name         string
		files        map[string]string
		wantObjects  []string
		wantProblems []string
	}{{
		name: "empty documents and comments",
		files: map[string]string{
			"a.yaml": "# nothing here\n---\n---\n" + manifestService("a") + "---\n# end\n---\nnull\n",
		},
		wantObjects: []string{"Service default/a"},
	}, {
		name: "default namespace, explicit namespace, cluster-scoped class",
		files: map[string]string{
			"a.yaml": manifestService("a") + "---\n" + strings.Replace(manifestService("b"), "name: b", "name: b\n  namespace: other", 1) +
				"---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: c\n  namespace: x\n",
		},
		wantObjects: []string{"IngressClass /c", "Service default/a", "Service other/b"},
	}, {
		name: "CRLF line endings",
		files: map[string]string{
			"a.yaml": strings.ReplaceAll(manifestService("a")+"---\n"+manifestService("b"), "\n", "\r\n"),
		},
		wantObjects: []string{"Service default/a", "Service default/b"},
	}, {
		name: "typed list",
		files: map[string]string{
			"list.yaml": "apiVersion: v1\nkind: ServiceList\nitems:\n- metadata:\n    name: a\n- metadata:\n    name: b\n    namespace: x\n",
		},
		wantObjects: []string{"Service default/a", "Service x/b"},
	}, {
		name: "nested folders and every extension",
		files: map[string]string{
			"a/b/c/d.yaml": manifestService("d"),
			"a/e.YML":      manifestService("e"),
			"f.json":       `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "f"}}`,
		},
		// By path: "a/b/c/d.yaml" < "a/e.YML" < "f.json".
		wantObjects: []string{"Service default/d", "Service default/e", "Service default/f"},
	}, {
		name: "hidden and temporary files are skipped",
		files: map[string]string{
			".git/config.yaml": manifestService("git"),
			".hidden.yaml":     manifestService("hidden"),
			".#a.yaml":         manifestService("emacs-lock"),
			"#a.yaml#":         manifestService("emacs-autosave"),
			"a.yaml~":          manifestService("backup"),
			".a.yaml.swp":      "\x00binary",
			"a.yaml.swp":       "\x00binary",
			"notes.txt":        manifestService("txt"),
			"a.yaml":           manifestService("a"),
		},
		wantObjects: []string{"Service default/a"},
	}, {
		name: "other kinds are skipped without a problem",
		files: map[string]string{
			"app.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n---\n" +
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n---\n" +
				"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n" + manifestService("web"),
		},
		wantObjects: []string{"Service default/web"},
	}, {
		name: "bad YAML: file and line, other files unaffected",
		files: map[string]string{
			"bad.yaml":  manifestService("a") + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n" + tab + "labels: {}\n",
			"good.yaml": manifestService("c"),
		},
		wantObjects: []string{"Service default/c"},
		wantProblems: []string{
			"File /bad.yaml: InvalidManifest: line 14: yaml: found a tab character that violates indentation; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "bad YAML in a CRLF file",
		files: map[string]string{
			"bad.yaml": strings.ReplaceAll("# one\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [b\n", "\n", "\r\n"),
		},
		wantProblems: []string{
			"File /bad.yaml: InvalidManifest: line 6: yaml: did not find expected ',' or ']'; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "bad document separator",
		files: map[string]string{
			"bad.yaml": manifestService("a") + "--- apiVersion: v1\n" + manifestService("b"),
		},
		wantProblems: []string{
			"File /bad.yaml: InvalidManifest: line 9: invalid Yaml document separator: apiVersion: v1; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "JSON syntax error: line",
		files: map[string]string{
			"bad.json": "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\"\n  \"metadata\": {\"name\": \"a\"}\n}\n",
		},
		wantProblems: []string{
			"File /bad.json: InvalidManifest: line 4: couldn't get version/kind; json parse error: invalid character '\"' after object key:value pair; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "wrong type of a field",
		files: map[string]string{
			"bad.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: http\n",
		},
		wantProblems: []string{
			"File /bad.yaml: InvalidManifest: line 1: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "unknown field in a kind Postern reads",
		files: map[string]string{
			"bad.yaml": manifestService("a") + "---\n" + strings.Replace(manifestService("b"), "ports:", "portz:", 1),
		},
		wantProblems: []string{
			`File /bad.yaml: InvalidManifest: line 10: Service default/b: strict decoding error: unknown field "spec.portz"; nothing is loaded from it until it is fixed`,
		},
	}, {
		name: "duplicate key",
		files: map[string]string{
			"bad.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
		},
		wantProblems: []string{
			`File /bad.yaml: InvalidManifest: line 5: Service default/b: strict decoding error: yaml: unmarshal errors: key "name" already set in map; nothing is loaded from it until it is fixed`,
		},
	}, {
		name: "unknown kind of a CRD is a problem, the rest loads",
		files: map[string]string{
			"a.yaml": "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: web\n  namespace: shop\n---\n" + manifestService("a"),
		},
		wantObjects: []string{"Service default/a"},
		wantProblems: []string{
			`File /a.yaml: InvalidManifest: line 1: unknown kind "Certificate" in apiVersion "cert-manager.io/v1" (shop/web); skipped`,
		},
	}, {
		name: "unknown kind in a built-in group is a typo",
		files: map[string]string{
			"a.yaml": "apiVersion: networking.k8s.io/v1\nkind: Ingres\nmetadata:\n  name: web\n---\n" + manifestService("a"),
		},
		wantProblems: []string{
			`File /a.yaml: InvalidManifest: line 1: unknown kind "Ingres" in apiVersion "networking.k8s.io/v1" (web); nothing is loaded from it until it is fixed`,
		},
	}, {
		name: "unknown version of a built-in group is a typo",
		files: map[string]string{
			"a.yaml": "apiVersion: v2\nkind: Service\nmetadata:\n  name: a\n",
		},
		wantProblems: []string{
			`File /a.yaml: InvalidManifest: line 1: unknown kind "Service" in apiVersion "v2" (a); nothing is loaded from it until it is fixed`,
		},
	}, {
		name: "old API version of a kind Postern reads",
		files: map[string]string{
			"a.yaml": "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: web\n",
		},
		wantProblems: []string{
			"File /a.yaml: InvalidManifest: line 1: Ingress extensions/v1beta1 (web) is not supported; use apiVersion networking.k8s.io/v1; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "missing kind, apiVersion, name",
		files: map[string]string{
			"kind.yaml":    "apiVersion: v1\nmetadata:\n  name: a\n",
			"version.yaml": "kind: Service\nmetadata:\n  name: a\n",
			"name.yaml":    "apiVersion: v1\nkind: Service\nmetadata:\n  labels: {a: b}\n",
			"scalar.yaml":  "just words\n",
		},
		wantProblems: []string{
			"File /kind.yaml: InvalidManifest: line 1: kind is missing; nothing is loaded from it until it is fixed",
			"File /name.yaml: InvalidManifest: line 1: Service has no metadata.name; nothing is loaded from it until it is fixed",
			"File /scalar.yaml: InvalidManifest: line 1: couldn't get version/kind; json parse error: json: cannot unmarshal string into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }; nothing is loaded from it until it is fixed",
			"File /version.yaml: InvalidManifest: line 1: apiVersion is missing; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "List with a broken item",
		files: map[string]string{
			"list.json": `{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}, {"kind": "Service"}]}`,
		},
		wantProblems: []string{
			"File /list.json: InvalidManifest: line 1: apiVersion is missing; nothing is loaded from it until it is fixed",
		},
	}, {
		name: "duplicates: the first by file path wins",
		files: map[string]string{
			"b.yaml":   manifestService("x"),
			"a/z.yaml": "# first\n" + manifestService("x") + "---\n" + manifestService("x"),
		},
		wantObjects: []string{"Service default/x"},
		wantProblems: []string{
			"Service default/x: InvalidManifest: defined again in a/z.yaml line 11; using the one in a/z.yaml line 1",
			"Service default/x: InvalidManifest: defined again in b.yaml line 1; using the one in a/z.yaml line 1",
		},
	}, {
		name: "same name, different kind or namespace: no duplicate",
		files: map[string]string{
			"a.yaml": manifestService("x") + "---\n" + strings.Replace(manifestService("x"), "name: x", "name: x\n  namespace: other", 1) +
				"---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n",
		},
		wantObjects: []string{"Service default/x", "Service other/x", "Secret default/x"},
	}, {
		name: "file too large",
		files: map[string]string{
			"big.yaml": "# " + strings.Repeat("x", maxManifestSize) + "\n",
		},
		wantProblems: []string{
			"File /big.yaml: InvalidManifest: cannot read: file is larger than 16 MiB; nothing is loaded from it until it is fixed",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeManifestFiles(t, dir, tt.files)
			snap, problems, err := NewManifestSource(dir, zaptest.NewLogger(t)).Load()
			if err != nil {
				t.Fatal(err)
			}
			if d := manifestDiff(manifestKeys(snap), tt.wantObjects); d != "" {
				t.Errorf("objects:\n%s", d)
			}
			if d := manifestDiff(manifestProblemStrings(problems), tt.wantProblems); d != "" {
				t.Errorf("problems:\n%s", d)
			}
		})
	}
}

func TestManifestSourceLoadFolderErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.yaml")
	writeManifestFiles(t, dir, map[string]string{"file.yaml": manifestService("a")})
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "filelink")); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"missing":        filepath.Join(dir, "missing"),
		"not a folder":   file,
		"dangling link":  filepath.Join(dir, "link"),
		"link to a file": filepath.Join(dir, "filelink"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := NewManifestSource(path, zap.NewNop()).Load(); err == nil {
				t.Errorf("Load(%s) = nil error, want one", path)
			}
		})
	}
	t.Run("link to a folder is followed", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "manifests")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		snap, _, err := NewManifestSource(link, zap.NewNop()).Load()
		if err != nil {
			t.Fatal(err)
		}
		if d := manifestDiff(manifestKeys(snap), []string{"Service default/a"}); d != "" {
			t.Error(d)
		}
	})
}

// manifestStep is one change to a folder and what the source must show after it.
type manifestStep struct {
	name         string
	change       func(t *testing.T, dir string)
	wantObjects  []string
	wantProblems []string
	check        func(Snapshot) error // optional, more than the keys
}

func manifestWriteStep(files map[string]string) func(*testing.T, string) {
	return func(t *testing.T, dir string) { writeManifestFiles(t, dir, files) }
}

// manifestServicePort checks the port of the Service default/name.
func manifestServicePort(name string, port int32) func(Snapshot) error {
	return func(s Snapshot) error {
		for _, svc := range s.Services {
			if svc.Namespace == "default" && svc.Name == name {
				if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].Port != port {
					return fmt.Errorf("Service %s ports %+v, want port %d", name, svc.Spec.Ports, port)
				}
				return nil
			}
		}
		return fmt.Errorf("no Service %s", name)
	}
}

const manifestBroken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: [a\n"

func TestManifestSourceLastGood(t *testing.T) {
	dir := t.TempDir()
	src := NewManifestSource(dir, zaptest.NewLogger(t))
	ingress := "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\nspec:\n  defaultBackend:\n    service:\n      name: a\n      port:\n        number: 80\n"
	steps := []manifestStep{{
		name:        "good",
		change:      manifestWriteStep(map[string]string{"a.yaml": manifestService("a") + "---\n" + ingress, "b.yaml": manifestService("b")}),
		wantObjects: []string{"Ingress default/a", "Service default/a", "Service default/b"},
	}, {
		name:        "broken: the last good objects stay",
		change:      manifestWriteStep(map[string]string{"a.yaml": manifestService("a2") + "---\n" + manifestBroken}),
		wantObjects: []string{"Ingress default/a", "Service default/a", "Service default/b"},
		wantProblems: []string{
			"File /a.yaml: InvalidManifest: line 13: yaml: did not find expected ',' or ']'; keeping the 2 objects last loaded from it",
		},
	}, {
		name:        "still broken, differently",
		change:      manifestWriteStep(map[string]string{"a.yaml": "kind: Service\n"}),
		wantObjects: []string{"Ingress default/a", "Service default/a", "Service default/b"},
		wantProblems: []string{
			"File /a.yaml: InvalidManifest: line 1: apiVersion is missing; keeping the 2 objects last loaded from it",
		},
	}, {
		name:        "fixed: the new objects replace them",
		change:      manifestWriteStep(map[string]string{"a.yaml": manifestService("a2")}),
		wantObjects: []string{"Service default/a2", "Service default/b"},
	}, {
		name:        "an unknown CRD kind does not break the file",
		change:      manifestWriteStep(map[string]string{"a.yaml": manifestService("a3") + "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"}),
		wantObjects: []string{"Service default/a3", "Service default/b"},
		wantProblems: []string{
			`File /a.yaml: InvalidManifest: line 10: unknown kind "Widget" in apiVersion "example.com/v1" (w); skipped`,
		},
	}, {
		name:        "deleted: its objects go",
		change:      manifestWriteStep(map[string]string{"a.yaml": ""}),
		wantObjects: []string{"Service default/b"},
	}, {
		name:        "a file that never parsed contributes nothing",
		change:      manifestWriteStep(map[string]string{"c.yaml": manifestService("c") + "---\n" + manifestBroken}),
		wantObjects: []string{"Service default/b"},
		wantProblems: []string{
			"File /c.yaml: InvalidManifest: line 13: yaml: did not find expected ',' or ']'; nothing is loaded from it until it is fixed",
		},
	}, {
		name:        "broken then deleted",
		change:      manifestWriteStep(map[string]string{"c.yaml": ""}),
		wantObjects: []string{"Service default/b"},
	}, {
		name: "replaced by a file too large: the last good objects stay",
		change: manifestWriteStep(map[string]string{
			"b.yaml": manifestService("b") + "# " + strings.Repeat("x", maxManifestSize) + "\n",
		}),
		wantObjects: []string{"Service default/b"},
		wantProblems: []string{
			"File /b.yaml: InvalidManifest: cannot read: file is larger than 16 MiB; keeping the 1 object last loaded from it",
		},
	}}
	for _, step := range steps {
		step.change(t, dir)
		snap, problems, err := src.Load()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if d := manifestDiff(manifestKeys(snap), step.wantObjects); d != "" {
			t.Errorf("%s: objects:\n%s", step.name, d)
		}
		if d := manifestDiff(manifestProblemStrings(problems), step.wantProblems); d != "" {
			t.Errorf("%s: problems:\n%s", step.name, d)
		}
	}
}

// manifestRecorder keeps the last snapshot Run delivered.
type manifestRecorder struct {
	mu       sync.Mutex
	snap     Snapshot
	problems []Problem
	calls    int
	changed  chan struct{} // receives after each call, without blocking
}

func (r *manifestRecorder) onChange(s Snapshot, p []Problem) {
	r.mu.Lock()
	r.snap, r.problems = s, p
	r.calls++
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor polls the last delivered snapshot until it matches step or 5 s
// have passed.
func (r *manifestRecorder) waitFor(t *testing.T, step manifestStep) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		keys, problems, snap, calls := manifestKeys(r.snap), manifestProblemStrings(r.problems), r.snap, r.calls
		r.mu.Unlock()
		d := manifestDiff(keys, step.wantObjects) + manifestDiff(problems, step.wantProblems)
		if d == "" && step.check != nil {
			if err := step.check(snap); err != nil {
				d = err.Error()
			}
		}
		if d == "" && calls > 0 {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: after 5 s (%d calls of onChange):\n%s", step.name, calls, d)
		}
	}
}

func TestManifestSourceRun(t *testing.T) {
	dir := t.TempDir()
	writeManifestFiles(t, dir, map[string]string{"notes.txt": "not a manifest"})
	src := NewManifestSource(dir, zaptest.NewLogger(t))
	rec := &manifestRecorder{changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, rec.onChange) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5 s after its context was cancelled")
		}
	})

	svc81 := strings.Replace(manifestService("a"), "port: 80", "port: 81", 1)
	svc82 := strings.Replace(manifestService("a"), "port: 80", "port: 82", 1)
	steps := []manifestStep{{
		name:   "initial load of a folder with no manifests",
		change: func(*testing.T, string) {},
	}, {
		name:        "file written",
		change:      manifestWriteStep(map[string]string{"a.yaml": manifestService("a")}),
		wantObjects: []string{"Service default/a"},
		check:       manifestServicePort("a", 80),
	}, {
		name:        "modified in place",
		change:      manifestWriteStep(map[string]string{"a.yaml": svc81}),
		wantObjects: []string{"Service default/a"},
		check:       manifestServicePort("a", 81),
	}, {
		name: "replaced by rename, as editors and kubectl do",
		change: func(t *testing.T, dir string) {
			writeManifestFiles(t, dir, map[string]string{".a.yaml.tmp": svc82})
			if err := os.Rename(filepath.Join(dir, ".a.yaml.tmp"), filepath.Join(dir, "a.yaml")); err != nil {
				t.Fatal(err)
			}
		},
		wantObjects: []string{"Service default/a"},
		check:       manifestServicePort("a", 82),
	}, {
		name:        "new subfolders with a file written at once",
		change:      manifestWriteStep(map[string]string{"sub/deeper/b.yaml": manifestService("b")}),
		wantObjects: []string{"Service default/a", "Service default/b"},
	}, {
		name:        "a file added to the new subfolder later is seen: it is watched",
		change:      manifestWriteStep(map[string]string{"sub/deeper/c.yaml": manifestService("c")}),
		wantObjects: []string{"Service default/a", "Service default/b", "Service default/c"},
	}, {
		name:        "broken: the last good objects stay",
		change:      manifestWriteStep(map[string]string{"sub/deeper/c.yaml": manifestBroken}),
		wantObjects: []string{"Service default/a", "Service default/b", "Service default/c"},
		wantProblems: []string{
			"File /sub/deeper/c.yaml: InvalidManifest: line 4: yaml: did not find expected ',' or ']'; keeping the 1 object last loaded from it",
		},
	}, {
		name:        "file deleted",
		change:      manifestWriteStep(map[string]string{"sub/deeper/b.yaml": ""}),
		wantObjects: []string{"Service default/a", "Service default/c"},
		wantProblems: []string{
			"File /sub/deeper/c.yaml: InvalidManifest: line 4: yaml: did not find expected ',' or ']'; keeping the 1 object last loaded from it",
		},
	}, {
		name: "subfolder deleted",
		change: func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
				t.Fatal(err)
			}
		},
		wantObjects: []string{"Service default/a"},
	}, {
		name:        "ConfigMap volume: links into ..data",
		change:      func(t *testing.T, dir string) { manifestConfigMapSwap(t, dir, "..v1", manifestService("cm1")) },
		wantObjects: []string{"Service default/a", "Service default/cm1"},
	}, {
		name:        "ConfigMap volume: ..data swapped",
		change:      func(t *testing.T, dir string) { manifestConfigMapSwap(t, dir, "..v2", manifestService("cm2")) },
		wantObjects: []string{"Service default/a", "Service default/cm2"},
	}}
	for _, step := range steps {
		step.change(t, dir)
		rec.waitFor(t, step)
	}
}

// manifestConfigMapSwap updates dir the way the kubelet updates a ConfigMap volume:
// the data goes into a new hidden folder, a link ..data is swapped to it
// atomically by rename, and the visible file is a link through ..data.
func manifestConfigMapSwap(t *testing.T, dir, version, content string) {
	t.Helper()
	writeManifestFiles(t, dir, map[string]string{version + "/cm.yaml": content})
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "cm.yaml")); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "cm.yaml"), filepath.Join(dir, "cm.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	olds, _ := filepath.Glob(filepath.Join(dir, "..v*"))
	for _, old := range olds {
		if filepath.Base(old) != version {
			if err := os.RemoveAll(old); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestManifestSourceRunFolderMissing(t *testing.T) {
	src := NewManifestSource(filepath.Join(t.TempDir(), "missing"), zap.NewNop())
	err := src.Run(context.Background(), func(Snapshot, []Problem) { t.Error("onChange called") })
	if err == nil {
		t.Error("Run on a missing folder returned nil")
	}
}

// BenchmarkManifestSourceLoad measures reading a folder of 100 files of 10
// documents: "unchanged" is what every fsnotify event costs when nothing
// changed (read and hash), "changed" decodes everything.
func BenchmarkManifestSourceLoad(b *testing.B) {
	dir := b.TempDir()
	for i := range 100 {
		var doc strings.Builder
		for j := range 10 {
			fmt.Fprintf(&doc, "---\n%s", manifestService(fmt.Sprintf("s-%d-%d", i, j)))
		}
		path := filepath.Join(dir, fmt.Sprintf("f%03d.yaml", i))
		if err := os.WriteFile(path, []byte(doc.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("unchanged", func(b *testing.B) {
		src := NewManifestSource(dir, zap.NewNop())
		if _, _, err := src.Load(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := src.Load(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("changed", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := NewManifestSource(dir, zap.NewNop()).Load(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
