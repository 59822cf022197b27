package controller

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
	checkFixtureObjects(t, snap)
}

// checkFixtureObjects checks, one kind per subtest, that the objects of
// testdata/manifests/site decoded with the fields and defaults they should
// have.
func checkFixtureObjects(t *testing.T, snap Snapshot) {
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

// manifestLoadCase is a folder for TestManifestSourceLoad (path relative
// to it -> content) and what Load must return for it.
type manifestLoadCase struct {
	name         string
	files        map[string]string
	wantObjects  []string
	wantProblems []string
}

// manifestLoadLayoutCases are folders Load reads in full: the layouts,
// encodings and file names it accepts, and what it skips without a problem.
func manifestLoadLayoutCases() []manifestLoadCase {
	return []manifestLoadCase{{
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
	}}
}

// manifestLoadSyntaxCases are files that do not decode: bad YAML or JSON,
// a field of the wrong type, unknown or duplicate keys.
func manifestLoadSyntaxCases() []manifestLoadCase {
	const tab = "\t"
	return []manifestLoadCase{{
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
	}}
}

// manifestLoadKindCases are documents of kinds or API versions Postern does
// not read.
func manifestLoadKindCases() []manifestLoadCase {
	return []manifestLoadCase{{
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
	}}
}

// manifestLoadObjectCases are objects that are incomplete, defined twice or
// too large, and names that only look like duplicates.
func manifestLoadObjectCases() []manifestLoadCase {
	return []manifestLoadCase{{
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
}

func TestManifestSourceLoad(t *testing.T) {
	tests := slices.Concat(manifestLoadLayoutCases(), manifestLoadSyntaxCases(), manifestLoadKindCases(), manifestLoadObjectCases())
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
