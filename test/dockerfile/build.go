package dockerfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Parse parses a Dockerfile into its stages, as BuildKit does.
func Parse(dt []byte) ([]instructions.Stage, []instructions.ArgCommand, error) {
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, nil, fmt.Errorf("parse Dockerfile: %w", err)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("parse Dockerfile instructions: %w", err)
	}
	return stages, metaArgs, nil
}

// Command is a RUN line of a Dockerfile as the shell would run it: the
// environment assignments in front of it and the words of the command,
// after ARG and ENV values are substituted and quotes removed.
type Command struct {
	// Env is the stage's ARG and ENV values at that RUN, plus the
	// command's own NAME=value prefixes, as NAME=value.
	Env []string
	// Assign are the command's own NAME=value prefixes.
	Assign []string
	// Args are the command and its arguments.
	Args []string
	// Stage is the name of the stage holding it.
	Stage string
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// FindRun returns the one RUN command, in any stage, whose words contain
// all of want (for example "go", "build"), expanded with the build
// arguments given (unset ARGs take their defaults).
func FindRun(dt []byte, buildArgs map[string]string, want ...string) (*Command, error) {
	stages, _, err := Parse(dt)
	if err != nil {
		return nil, err
	}
	lex := shell.NewLex('\\')
	var found []*Command
	for _, st := range stages {
		env := map[string]string{}
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					switch v, ok := buildArgs[a.Key]; {
					case ok:
						env[a.Key] = v
					case a.Value != nil:
						env[a.Key], err = expand(lex, *a.Value, env)
					default:
						env[a.Key] = ""
					}
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					env[kv.Key], err = expand(lex, kv.Value, env)
				}
			case *instructions.RunCommand:
				if c.PrependShell && len(c.CmdLine) == 1 {
					var words []string
					words, err = lex.ProcessWords(c.CmdLine[0], envGetter(env))
					if err == nil && containsAll(words, want) {
						found = append(found, newCommand(st.Name, env, words))
					}
				}
			}
			if err != nil {
				return nil, fmt.Errorf("stage %s: %s: %w", st.Name, c.Name(), err)
			}
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want one RUN with %q, found %d", want, len(found))
	}
	return found[0], nil
}

func expand(lex *shell.Lex, s string, env map[string]string) (string, error) {
	v, _, err := lex.ProcessWord(s, envGetter(env))
	return v, err
}

func envGetter(env map[string]string) shell.EnvGetter {
	kv := make([]string, 0, len(env))
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	return shell.EnvsFromSlice(kv)
}

func containsAll(words, want []string) bool {
	for _, w := range want {
		if !slices.Contains(words, w) {
			return false
		}
	}
	return true
}

func newCommand(stage string, env map[string]string, words []string) *Command {
	c := &Command{Stage: stage}
	for k, v := range env {
		c.Env = append(c.Env, k+"="+v)
	}
	slices.Sort(c.Env)
	for len(words) > 0 && assignment.MatchString(words[0]) {
		c.Assign = append(c.Assign, words[0])
		words = words[1:]
	}
	c.Env = append(c.Env, c.Assign...)
	c.Args = words
	return c
}

// Words splits a shell command line as the shell would (quotes removed,
// no variables expected), for comparing a Makefile's command with a
// Dockerfile's.
func Words(line string) ([]string, error) {
	return shell.NewLex('\\').ProcessWords(line, shell.EnvsFromSlice(nil))
}

// MakeCommand returns the command `make -n target` prints in dir (the
// Makefile's recipe, variables expanded) whose line contains match.
func MakeCommand(ctx context.Context, dir, target, match string, vars ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory", "-n", "-C", dir, target}, vars...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make -n %s: %w\n%s", target, err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, match) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) != 1 {
		return "", fmt.Errorf("make -n %s: want one line with %q, got %q", target, match, lines)
	}
	return lines[0], nil
}

// CopyContext copies root to dst as a Docker build context: without what
// root's .dockerignore excludes. It returns the files copied, relative to
// root, sorted.
func CopyContext(root, dst string) ([]string, error) {
	var patterns []string
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	switch {
	case err == nil:
		patterns, err = ignorefile.ReadAll(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("read .dockerignore: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	var copied []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		// As Docker does: an excluded folder is skipped unless an
		// exception pattern could bring back something inside it.
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if excluded {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			copied = append(copied, rel)
			return copyFile(path, target)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy build context: %w", err)
	}
	slices.Sort(copied)
	return copied, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
