//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// step is one command block of docs/walkthrough.md and the lines its output must
// have.
type step struct {
	line   int
	script string
	want   []string
}

// walkthroughSteps reads the ```sh blocks of the walkthrough (but those after a
// "<!-- not run" comment) and the ```text block after each, if any.
func walkthroughSteps(t *testing.T, path string) []step {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var steps []step
	skip := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "<!-- not run") {
			skip = true
			continue
		}
		if l != "```sh" && l != "```text" {
			continue
		}
		kind := l
		start := i + 1
		for i++; i < len(lines) && lines[i] != "```"; i++ {
		}
		body := lines[start:i]
		switch {
		case kind == "```sh" && skip:
			skip = false
		case kind == "```sh":
			steps = append(steps, step{line: start, script: strings.Join(body, "\n")})
		case len(steps) > 0 && steps[len(steps)-1].want == nil:
			steps[len(steps)-1].want = body
		}
	}
	return steps
}

// expectedLine turns a line of a ```text block into a pattern: "<...>" is anything,
// a run of spaces is any run of white space, and the line is matched from the start
// of an output line.
func expectedLine(s string) *regexp.Regexp {
	parts := strings.Split(strings.TrimSpace(s), "<...>")
	for i, p := range parts {
		q := regexp.QuoteMeta(p)
		parts[i] = regexp.MustCompile(` +`).ReplaceAllString(q, `\s+`)
	}
	return regexp.MustCompile(`^\s*` + strings.Join(parts, `.*?`))
}

// matchLines checks that every wanted line matches an output line of its own.
func matchLines(out string, want []string) error {
	lines := strings.Split(out, "\n")
	used := make([]bool, len(lines))
next:
	for _, w := range want {
		re := expectedLine(w)
		for i, l := range lines {
			if !used[i] && re.MatchString(l) {
				used[i] = true
				continue next
			}
		}
		return fmt.Errorf("no output line like %q", w)
	}
	return nil
}

// TestWalkthrough runs every command of docs/walkthrough.md as written, with kubectl,
// helm and in-cluster the wrappers `make cluster` makes, and checks its output.
func TestWalkthrough(t *testing.T) {
	root := filepath.Dir(filepath.Dir(os.Getenv("POSTERN_E2E_CHART")))
	steps := walkthroughSteps(t, filepath.Join(root, "docs", "walkthrough.md"))
	if len(steps) < 10 {
		t.Fatalf("found %d steps in the walkthrough; the parser or the page is broken", len(steps))
	}
	bin := t.TempDir()
	helmHome := t.TempDir()
	wrappers := map[string]string{
		"kubectl":    fmt.Sprintf("exec %q --kubeconfig %q \"$@\"\n", env.kubectl, cluster.kubeconfig),
		"helm":       fmt.Sprintf("export HELM_CACHE_HOME=%[1]q/cache HELM_CONFIG_HOME=%[1]q/config HELM_DATA_HOME=%[1]q/data\nexec %[2]q --kubeconfig %[3]q \"$@\"\n", helmHome, os.Getenv("POSTERN_E2E_HELM"), cluster.kubeconfig),
		"in-cluster": "exec \"$@\"\n", // the test runs in the cluster's network namespace already
	}
	for name, body := range wrappers {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = kubectlErr("delete", "namespace", "team-shop", "team-blog", "postern", "--wait=false")
		_ = exec.Command(filepath.Join(bin, "helm"), "uninstall", "postern", "--namespace", "postern").Run() //nolint:noctx // best-effort clean-up
	})
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", s.script)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("walkthrough line %d: %v\n--- commands ---\n%s\n--- output ---\n%s", s.line, err, s.script, out)
		}
		if err := matchLines(string(out), s.want); err != nil {
			t.Fatalf("walkthrough line %d: %v\n--- commands ---\n%s\n--- output ---\n%s", s.line, err, s.script, out)
		}
		t.Logf("walkthrough line %d: ok (%d lines checked)", s.line, len(s.want))
	}
}
