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
)

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
	rec := startManifestRun(t, dir)
	steps := slices.Concat(manifestRunFileSteps(), manifestRunFolderSteps())
	for _, step := range steps {
		step.change(t, dir)
		rec.waitFor(t, step)
	}
}

// startManifestRun runs a ManifestSource on dir until the test ends, and
// returns the recorder its onChange calls go to. Run must return nil within
// 5 s of its context being cancelled.
func startManifestRun(t *testing.T, dir string) *manifestRecorder {
	t.Helper()
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
	return rec
}

// manifestRunFileSteps are TestManifestSourceRun's first steps: the first
// load, then one file written, modified and replaced.
func manifestRunFileSteps() []manifestStep {
	svc81 := strings.Replace(manifestService("a"), "port: 80", "port: 81", 1)
	svc82 := strings.Replace(manifestService("a"), "port: 80", "port: 82", 1)
	return []manifestStep{{
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
	}}
}

// manifestRunFolderSteps follow manifestRunFileSteps: subfolders added and
// removed, a broken and a deleted file, and a ConfigMap volume's links.
func manifestRunFolderSteps() []manifestStep {
	return []manifestStep{{
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
