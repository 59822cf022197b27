package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/controller"
)

// migrateFolder writes files (name -> YAML) into a new folder.
func migrateFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// migrateIngressYAML is an Ingress shop/name with one path; class is its
// spec.ingressClassName ("" for none), ann its annotations as YAML lines.
func migrateIngressYAML(name, class string, ann ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: shop\n", name)
	if len(ann) > 0 {
		b.WriteString("  annotations:\n")
		for _, a := range ann {
			b.WriteString("    " + a + "\n")
		}
	}
	b.WriteString("spec:\n")
	if class != "" {
		b.WriteString("  ingressClassName: " + class + "\n")
	}
	fmt.Fprintf(&b, "  rules:\n  - host: %s.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n---\n", name)
	return b.String()
}

const nginxClassYAML = `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: k8s.io/ingress-nginx}
---
`

const nginxConfigMapYAML = `apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data:
  use-forwarded-headers: "true"
  worker-processes: "4"
`

// runMigrateArgs runs `postern migrate` with args and returns its stdout,
// its stderr and its error.
func runMigrateArgs(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runMigrate(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestMigrateManifests(t *testing.T) {
	t.Parallel()
	dir := migrateFolder(t, map[string]string{
		"class.yaml": nginxClassYAML,
		"apps/ingresses.yaml": migrateIngressYAML("shop", "nginx",
			"nginx.ingress.kubernetes.io/backend-protocol: FCGI", "nginx.ingress.kubernetes.io/proxy-body-size: 8m", "postern.dev/hsts: \"true\"") +
			migrateIngressYAML("classless", "", "nginx.org/client-max-body-size: 8m") +
			migrateIngressYAML("traefik", "traefik", "nginx.ingress.kubernetes.io/server-snippet: x"),
		"nginx/configmap.yaml": nginxConfigMapYAML,
		"broken.yaml":          "kind: [",
	})

	stdout, stderr, err := runMigrateArgs(t, "--manifests", dir, "--nginx-configmap", "ingress-nginx/ingress-nginx-controller", "--output", "json")
	if !errors.Is(err, errUnsupportedFound) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line saying something is unsupported", err)
	}
	var got []map[string]string
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not a JSON array of objects of strings: %v\n%s", err, stdout)
	}
	want := []map[string]string{
		{"kind": "ingress", "namespace": "shop", "ingress": "classless", "annotation": "nginx.org/client-max-body-size", "value": "8m", "status": "unknown"},
		{"kind": "ingress", "namespace": "shop", "ingress": "shop", "annotation": "nginx.ingress.kubernetes.io/backend-protocol", "value": "FCGI", "status": "unsupported"},
		{"kind": "ingress", "namespace": "shop", "ingress": "shop", "annotation": "nginx.ingress.kubernetes.io/proxy-body-size", "value": "8m"},
		{"kind": "configmap", "namespace": "ingress-nginx", "configmap": "ingress-nginx-controller", "key": "use-forwarded-headers", "value": "true", "flag": "--trusted-proxies"},
		{"kind": "configmap", "namespace": "ingress-nginx", "configmap": "ingress-nginx-controller", "key": "worker-processes", "value": "4", "status": "ignored"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d findings, want %d:\n%s", len(got), len(want), stdout)
	}
	counts := make(map[string]int)
	for i, w := range want {
		g := got[i]
		counts[g["status"]]++
		for k, v := range w {
			if g[k] != v {
				t.Errorf("finding %d: %s = %q, want %q (%v)", i, k, g[k], v, g)
			}
		}
		if g["status"] == "" || g["note"] == "" {
			t.Errorf("finding %d has no status or note: %v", i, g)
		}
	}
	wantSummary := fmt.Sprintf("2 Ingresses of class nginx, 5 findings: %d supported, %d partial, %d ignored, %d unsupported, %d unknown",
		counts["supported"], counts["partial"], counts["ignored"], counts["unsupported"], counts["unknown"])
	if !strings.Contains(stderr, "postern migrate: warning: broken.yaml: line 1:") || !strings.Contains(stderr, wantSummary+"\n") {
		t.Errorf("stderr:\n%s\nwant the broken file's warning and %q", stderr, wantSummary)
	}

	// The table: the same findings, aligned, and the summary.
	stdout, _, err = runMigrateArgs(t, "--manifests", dir, "--nginx-configmap", "ingress-nginx/ingress-nginx-controller")
	if !errors.Is(err, errUnsupportedFound) {
		t.Fatalf("table: err = %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 10 || lines[4] != "" || lines[8] != "" || lines[9] != wantSummary {
		t.Fatalf("table:\n%s\nwant a header and 3 rows, a blank line, a header and 2 rows, a blank line and %q", stdout, wantSummary)
	}
	for _, block := range [][]string{lines[0:4], lines[5:8]} {
		col := strings.Index(block[0], "STATUS")
		for _, l := range block[1:] {
			if len(l) <= col || l[col-2:col] != "  " || l[col] == ' ' {
				t.Errorf("row not aligned under STATUS:\n%s\n%s", block[0], l)
			}
		}
	}
	if !strings.HasPrefix(lines[0], "NAMESPACE  INGRESS    ANNOTATION") || !strings.HasPrefix(lines[5], "CONFIGMAP  ") || !strings.Contains(lines[6], "--trusted-proxies") {
		t.Errorf("table headers or flag:\n%s", stdout)
	}
}

func TestMigrateNothingUnsupported(t *testing.T) {
	t.Parallel()
	dir := migrateFolder(t, map[string]string{"i.yaml": migrateIngressYAML("shop", "nginx",
		"nginx.ingress.kubernetes.io/proxy-body-size: 8m", "nginx.ingress.kubernetes.io/no-such-thing: x",
		"nginx.ingress.kubernetes.io/configuration-snippet: x") +
		migrateIngressYAML("edge", "edge", "nginx.ingress.kubernetes.io/proxy-body-size: 1m")})
	// Another class and prefix: the snippet is no longer under the prefix.
	stdout, _, err := runMigrateArgs(t, "--manifests", dir, "--ingress-class", "edge", "--output", "json")
	if err != nil {
		t.Fatalf("err = %v, want none", err)
	}
	var got []controller.NginxFinding
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got) != 1 || got[0].Ingress != "edge" {
		t.Errorf("findings %+v, %v; want edge's one", got, err)
	}
	stdout, _, err = runMigrateArgs(t, "--manifests", dir, "--annotations-prefix", "example.com")
	if err != nil || stdout != "1 Ingress of class nginx, 0 findings: 0 supported, 0 partial, 0 ignored, 0 unsupported, 0 unknown\n" {
		t.Errorf("another prefix: %v\n%s", err, stdout)
	}
	// An empty folder: an empty array.
	stdout, _, err = runMigrateArgs(t, "--manifests", t.TempDir(), "--output", "json")
	if err != nil || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("empty folder: %v, %q", err, stdout)
	}
}

func TestMigrateBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"+
		"contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", "yaml"}, `migrate: invalid value "yaml" for --output: want table or json`},
		{[]string{"--nginx-configmap", "controller"}, `migrate: invalid value "controller" for --nginx-configmap: want namespace/name`},
		{[]string{"--manifests", dir, "--kubeconfig", kubeconfig}, "migrate: --manifests and --kubeconfig are exclusive"},
		{[]string{"--manifests", file}, "not a directory"},
		{[]string{"--manifests", filepath.Join(dir, "none")}, "migrate: --manifests: stat"},
		{[]string{"--ingress-class", ""}, "migrate: --ingress-class must not be empty"},
		{[]string{"--annotations-prefix", "a/b"}, `migrate: invalid value "a/b" for --annotations-prefix`},
		{[]string{"--timeout", "0s"}, "migrate: invalid value 0s for --timeout"},
		{[]string{"--bogus"}, "migrate: flag provided but not defined: -bogus"},
		{[]string{"extra"}, `migrate: unexpected argument "extra"`},
		{[]string{"--manifests", dir, "--nginx-configmap", "ingress-nginx/missing"}, "migrate: ConfigMap ingress-nginx/missing in " + dir + ": not found"},
		{[]string{"--kubeconfig", kubeconfig, "--timeout", "5s"}, "migrate: list Ingresses on https://127.0.0.1:1:"},
	} {
		_, _, err := runMigrateArgs(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || errors.Is(err, errUnsupportedFound) {
			t.Errorf("postern migrate %v: %v; want one line with %q", tt.args, err, tt.want)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"migrate", "--help"}, env(nil), &out); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "Usage: postern migrate") || !strings.Contains(out.String(), "-nginx-configmap") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
}

// TestMigrateExitStatus runs main in a child process: 1 with one line on
// stderr when something is unsupported, 0 otherwise.
func TestMigrateExitStatus(t *testing.T) {
	t.Parallel()
	if args := os.Getenv("POSTERN_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"postern"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	bad := migrateFolder(t, map[string]string{"i.yaml": migrateIngressYAML("shop", "nginx", "nginx.ingress.kubernetes.io/server-snippet: x")})
	good := migrateFolder(t, map[string]string{"i.yaml": migrateIngressYAML("shop", "nginx", "nginx.ingress.kubernetes.io/proxy-body-size: 8m")})
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"migrate", "--manifests", bad}, 1, "postern: migrate: 1 finding is unsupported by Postern, not served as written (see the report)\n"},
		{[]string{"migrate", "--manifests", good}, 0, ""},
		{[]string{"migrate", "--output", "yaml"}, 1, "postern: migrate: invalid value \"yaml\" for --output: want table or json\n"},
	} {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMigrateExitStatus$")
		cmd.Env = append(os.Environ(), "POSTERN_TEST_MAIN_ARGS="+strings.Join(tt.args, "\x1f"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || stderr.String() != tt.stderr {
			t.Errorf("postern %v: exit %d, stderr %q; want %d, %q\nstdout:\n%s", tt.args, code, stderr.String(), tt.code, tt.stderr, stdout.String())
		}
	}
}
