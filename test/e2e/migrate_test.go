//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runPostern runs bin/postern with args to its end and returns its exit
// status, stdout and stderr.
func runPostern(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.postern, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatalf("postern %s: %v", strings.Join(args, " "), err)
	}
	return 0, stdout.String(), stderr.String()
}

// TestMigrate runs `postern migrate` against the API server: the Ingresses
// of ingress-nginx's class (by field and by the legacy annotation) and its
// ConfigMap are read from the cluster and reported, an unsupported value
// makes it exit 1.
func TestMigrate(t *testing.T) {
	ns := namespace(t, "migrate")
	apply(t, ingressClass("migrate-nginx", "k8s.io/ingress-nginx", false)+
		annotated(ingress(ns, "shop", "migrate-nginx", "shop.migrate.example.com", "/=web"),
			"nginx.ingress.kubernetes.io/backend-protocol: FCGI", "nginx.ingress.kubernetes.io/proxy-body-size: 8m")+
		strings.Replace(ingress(ns, "legacy", "", "legacy.migrate.example.com", "/=web"),
			"metadata: {name: legacy, namespace: migrate}",
			"metadata: {name: legacy, namespace: migrate, annotations: {kubernetes.io/ingress.class: migrate-nginx}}", 1)+
		annotated(ingress(ns, "other", "someone-else", "other.migrate.example.com", "/=web"), "nginx.ingress.kubernetes.io/server-snippet: x")+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ingress-nginx-controller, namespace: migrate}\ndata: {use-forwarded-headers: \"true\"}\n")
	t.Cleanup(func() { _, _ = kubectlErr("delete", "ingressclass", "migrate-nginx") })

	code, stdout, stderr := runPostern(t, "migrate", "--kubeconfig", cluster.kubeconfig, "--ingress-class", "migrate-nginx",
		"--nginx-configmap", "migrate/ingress-nginx-controller", "--output", "json")
	if code != 1 || !strings.Contains(stderr, "postern: migrate: 1 finding is unsupported") {
		t.Fatalf("exit %d, stderr %q; want 1 and the unsupported finding", code, stderr)
	}
	var got []map[string]string
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var rows []string
	for _, f := range got {
		rows = append(rows, f["kind"]+" "+f["namespace"]+"/"+f["ingress"]+f["configmap"]+" "+f["annotation"]+f["key"]+"="+f["value"]+" "+f["flag"])
		if f["kind"] == "ingress" && f["annotation"] == "nginx.ingress.kubernetes.io/backend-protocol" && f["status"] != "unsupported" {
			t.Errorf("backend-protocol FCGI: %v", f)
		}
	}
	want := []string{
		"ingress migrate/legacy kubernetes.io/ingress.class=migrate-nginx ",
		"ingress migrate/shop nginx.ingress.kubernetes.io/backend-protocol=FCGI ",
		"ingress migrate/shop nginx.ingress.kubernetes.io/proxy-body-size=8m ",
		"configmap migrate/ingress-nginx-controller use-forwarded-headers=true --trusted-proxies",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}

	// A class no Ingress has: nothing to report, exit 0.
	code, stdout, stderr = runPostern(t, "migrate", "--kubeconfig", cluster.kubeconfig, "--ingress-class", "migrate-none")
	if code != 0 || !strings.HasPrefix(stdout, "0 Ingresses of class migrate-none, 0 findings") {
		t.Errorf("another class: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = runPostern(t, "migrate", "--kubeconfig", cluster.kubeconfig, "--nginx-configmap", "migrate/missing")
	if code != 1 || !strings.Contains(stderr, "ConfigMap migrate/missing on https://") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("a missing ConfigMap: exit %d, stderr %q", code, stderr)
	}
}
