package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// imageTable maps container images to the binaries the agent runs for them. An image
// is matched by its repository (the reference without tag and digest) against each
// entry's glob in order; the first match wins.
type imageTable struct {
	entries []imageEntry
}

type imageEntry struct {
	glob   string
	re     *regexp.Regexp
	binary string // absolute path on this machine
	id     string // "sha256:<hash of the binary's path and size>", the imageID reported
}

func (t *imageTable) add(v string) error {
	glob, bin, ok := strings.Cut(v, "=")
	if !ok || glob == "" || bin == "" {
		return fmt.Errorf("image %q: want GLOB=BINARY", v)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("image %q: %w", v, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("image %q: %s is not an executable file", v, abs)
	}
	parts := strings.Split(glob, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s %d %d", abs, st.Size(), st.ModTime().UnixNano()))
	t.entries = append(t.entries, imageEntry{
		glob: glob, re: regexp.MustCompile("^" + strings.Join(parts, ".*") + "$"),
		binary: abs, id: "sha256:" + hex.EncodeToString(sum[:]),
	})
	return nil
}

// repository is an image reference without its tag and digest.
func repository(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	return image
}

// lookup finds the entry of image, or says why there is none.
func (t *imageTable) lookup(image string) (imageEntry, error) {
	repo := repository(image)
	for _, e := range t.entries {
		if e.re.MatchString(repo) {
			return e, nil
		}
	}
	globs := make([]string, 0, len(t.entries))
	for _, e := range t.entries {
		globs = append(globs, e.glob)
	}
	return imageEntry{}, fmt.Errorf("image %q is not in this test node's image table (it runs %s)", image, strings.Join(globs, ", "))
}

// program is what a container runs: the binary of its image and the arguments,
// following Kubernetes' rules for command and args. The image's entrypoint is its
// binary; its default arguments are none. A command must name that binary (as
// "/name", "name" or any path ending in it): the image holds nothing else to run.
func (e imageEntry) program(command, args []string) (string, []string, error) {
	if len(command) == 0 {
		return e.binary, args, nil
	}
	if filepath.Base(command[0]) != filepath.Base(e.binary) {
		return "", nil, fmt.Errorf("exec: %q: executable file not found in the image (it holds %s only)", command[0], "/"+filepath.Base(e.binary))
	}
	return e.binary, append(append([]string{}, command[1:]...), args...), nil
}
