package dockerfile

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/mod/modfile"
)

// root is the repository, from this module's folder.
const root = "../.."

// baseImages are the images Postern's Dockerfile builds on, with the
// environment their registries report (PATH and the Go variables of the
// official golang image).
var baseImages = &OfflineResolver{Images: map[string]Image{
	"docker.io/library/golang:1.26-bookworm": {Env: []string{
		"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"GOLANG_VERSION=1.26", "GOTOOLCHAIN=local", "GOPATH=/go",
	}},
	"gcr.io/distroless/static-debian12:nonroot": {
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		User: "65532",
	},
}}

func readDockerfile(t *testing.T) []byte {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestLint: BuildKit's checks find nothing in the Dockerfile, with and
// without build arguments. Any warning fails, as `# check=error=true` makes
// `docker build` fail.
func TestLint(t *testing.T) {
	dt := readDockerfile(t)
	if !bytes.Contains(dt, []byte("\n# check=error=true")) {
		t.Error("the Dockerfile lacks `# check=error=true`: docker build would only warn")
	}
	for name, args := range map[string]map[string]string{
		"defaults":   nil,
		"build args": {"VERSION": "v1.2.3"},
	} {
		t.Run(name, func(t *testing.T) {
			warnings, err := Lint(ctx(t), dt, args, baseImages)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range warnings {
				t.Errorf("Dockerfile %s", w)
			}
		})
	}
}

// TestLintFindsProblems: the same lint on Dockerfiles with known faults
// reports each of them, so a silent lint cannot pass TestLint.
func TestLintFindsProblems(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile, rule string
	}{
		{"FROM as lower case", "FROM gcr.io/distroless/static-debian12:nonroot as final\nENTRYPOINT [\"/postern\"]\n", "FromAsCasing"},
		{"shell-form ENTRYPOINT", "FROM gcr.io/distroless/static-debian12:nonroot\nENTRYPOINT /postern\n", "JSONArgsRecommended"},
		{"undefined variable", "FROM gcr.io/distroless/static-debian12:nonroot\nCOPY $NOPE /x\nENTRYPOINT [\"/postern\"]\n", "UndefinedVar"},
		{"legacy ENV", "FROM gcr.io/distroless/static-debian12:nonroot\nENV A 1\nENTRYPOINT [\"/postern\"]\n", "LegacyKeyValueFormat"},
		{"relative WORKDIR", "FROM gcr.io/distroless/static-debian12:nonroot\nWORKDIR src\nENTRYPOINT [\"/postern\"]\n", "WorkdirRelativePath"},
		{"secret in ENV", "FROM gcr.io/distroless/static-debian12:nonroot\nENV API_TOKEN=x\nENTRYPOINT [\"/postern\"]\n", "SecretsUsedInArgOrEnv"},
		{"bad EXPOSE", "FROM gcr.io/distroless/static-debian12:nonroot\nEXPOSE 8080/TCP\nENTRYPOINT [\"/postern\"]\n", "ExposeProtoCasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warnings, err := Lint(ctx(t), []byte(tc.dockerfile), nil, baseImages)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(warnings, func(w Warning) bool { return w.Rule == tc.rule }) {
				t.Errorf("no %s warning, got %v", tc.rule, warnings)
			}
		})
	}
}

// TestResolverIsOffline: an image the table does not know is an error, not
// a registry request.
func TestResolverIsOffline(t *testing.T) {
	_, err := Lint(ctx(t), []byte("FROM example.com/unknown:1\nENTRYPOINT [\"/x\"]\n"), nil, baseImages)
	if err == nil || !strings.Contains(err.Error(), "unknown base image") {
		t.Fatalf("Lint with an unknown base image = %v, want the offline resolver's error", err)
	}
}

// TestImage: the final stage is distroless, non-root by number, exposes
// Postern's three ports and runs the binary the build stage built.
func TestImage(t *testing.T) {
	stages, metaArgs, err := Parse(readDockerfile(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 {
		t.Fatalf("want a build stage and a final stage, got %d stages", len(stages))
	}
	final := stages[len(stages)-1]
	if final.BaseName != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final image is FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.BaseName)
	}
	build := goBuild(t, "v0.0.0-test")
	output := flagValue(build.Args, "-o")
	var user, entrypoint string
	var exposed []string
	var copied bool
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			exposed = append(exposed, c.Ports...)
		case *instructions.EntrypointCommand:
			if !c.PrependShell {
				entrypoint = strings.Join(c.CmdLine, " ")
			}
		case *instructions.CopyCommand:
			copied = c.From == build.Stage && slices.Equal(c.SourcePaths, []string{"/src/" + output}) && c.DestPath == "/postern"
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless nonroot, numeric so the kubelet can check runAsNonRoot)", user)
	}
	slices.Sort(exposed)
	if want := []string{"10254", "8080", "8443"}; !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want %v", exposed, want)
	}
	if entrypoint != "/postern" {
		t.Errorf("ENTRYPOINT %q, want exec form [\"/postern\"]", entrypoint)
	}
	if !copied {
		t.Errorf("the final stage does not COPY --from=%s /src/%s /postern", build.Stage, output)
	}

	// The builder's Go is go.mod's: the go line's minor version.
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.ParseLax("go.mod", mod, nil)
	if err != nil || f.Go == nil {
		t.Fatalf("parse go.mod: %v", err)
	}
	parts := strings.SplitN(f.Go.Version, ".", 3)
	wantGo := strings.Join(parts[:min(2, len(parts))], ".")
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Key == "GO_VERSION" && (kv.Value == nil || *kv.Value != wantGo) {
				t.Errorf("ARG GO_VERSION=%v, want %s (go.mod says go %s)", kv.Value, wantGo, f.Go.Version)
			}
		}
	}
}

// goBuild returns the Dockerfile's go build command as the build stage's
// shell runs it, for a build on this machine's platform.
func goBuild(t *testing.T, version string) *Command {
	t.Helper()
	c, err := FindRun(readDockerfile(t), map[string]string{
		"VERSION": version, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH,
	}, "go", "build")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestBuildCommandIsTheMakefiles: the Dockerfile's go build line is word
// for word the one `make build` runs for bin/postern.
func TestBuildCommandIsTheMakefiles(t *testing.T) {
	const version = "v9.8.7-check"
	line, err := MakeCommand(ctx(t), root, "build", "./cmd/postern", "VERSION="+version, "GO=go", "BIN=bin")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := Words(line)
	if err != nil {
		t.Fatalf("split %q: %v", line, err)
	}
	c := goBuild(t, version)
	df := append(slices.Clone(c.Assign), c.Args...)
	if !slices.Equal(mk, df) {
		t.Errorf("the Dockerfile builds postern differently from the Makefile\n Makefile:   %q\n Dockerfile: %q", mk, df)
	}
}

// TestBuildFromContext runs the Dockerfile's go build line on the files
// .dockerignore leaves in the build context, in the build stage's
// environment: it builds, and the binary is static, trimmed, and prints
// the version it was stamped with.
func TestBuildFromContext(t *testing.T) {
	if testing.Short() {
		t.Skip("builds postern")
	}
	const version = "v0.0.0-dockerfile-test"
	c := goBuild(t, version)
	dir := t.TempDir()
	files, err := CopyContext(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasPrefix(f, ".git/") || strings.HasPrefix(f, "bin/") || strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "test/") {
			t.Errorf("the build context holds %s", f)
		}
	}
	for _, want := range []string{"go.mod", "go.sum", "cmd/postern/main.go"} {
		if !slices.Contains(files, want) {
			t.Errorf("the build context lacks %s", want)
		}
	}

	// The machine's Go settings stay; the build stage's ENV (GOOS,
	// GOARCH) and the line's own assignments apply on top, and nothing
	// this machine sets for itself (GOFLAGS) leaks in.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == "GOFLAGS" || k == "GOOS" || k == "GOARCH" || k == "CGO_ENABLED" || k == "VERSION"
	})
	for _, kv := range c.Env {
		if k, _, _ := strings.Cut(kv, "="); k == "GOOS" || k == "GOARCH" || k == "CGO_ENABLED" || k == "VERSION" {
			env = append(env, kv)
		}
	}
	cmd := exec.CommandContext(ctx(t), c.Args[0], c.Args[1:]...)
	cmd.Dir, cmd.Env = dir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
	}
	bin := filepath.Join(dir, filepath.FromSlash(flagValue(c.Args, "-o")))

	out, err := exec.CommandContext(ctx(t), bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "postern "+version {
		t.Errorf("%s --version = %q, %v; want %q", bin, out, err, "postern "+version)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%s): distroless/static has no libc", p.Type)
		}
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// (-trimpath keeps -ldflags out of the build info; --version above
	// shows the stamp.)
	if settings["-trimpath"] != "true" || settings["CGO_ENABLED"] != "0" {
		t.Errorf("build settings %v: want -trimpath and CGO_ENABLED=0", settings)
	}
}
