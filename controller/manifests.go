package controller

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// maxManifestSize caps one file; a larger one is a Problem, not read.
	maxManifestSize = 16 << 20
	// manifestHoldOff is how long Run waits after an event for more before
	// re-reading the folder, so that an editor's save or a ConfigMap
	// volume swap (several events each) is one change.
	manifestHoldOff = 50 * time.Millisecond
	// manifestMaxHoldOff caps the wait under a steady stream of events.
	manifestMaxHoldOff = 500 * time.Millisecond
)

// problemKindFile is the Problem Kind for a file or folder of manifests that
// cannot be read; the Problem's Name is its path relative to the folder.
const problemKindFile = "File"

// ManifestSource reads a folder of manifests into Snapshots: standalone mode
// (postern --manifests DIR). It reads every *.yaml, *.yml and *.json file
// below the folder, skipping hidden files and folders and editors' temporary
// files, and keeps the Ingresses, IngressClasses, Services, EndpointSlices,
// Secrets and ConfigMaps in them. Other kinds are skipped, so it can be pointed at a real
// manifests folder.
//
// A file that stops parsing keeps serving the objects last loaded from it
// until it parses again, so a typo never takes a site down.
//
// A ManifestSource is safe for concurrent use.
type ManifestSource struct {
	dir    string
	logger *zap.Logger

	mu          sync.Mutex
	files       map[string]*manifestFile // by path relative to dir, with "/"
	dirProblems []Problem                // folders below dir that cannot be read
}

// manifestFile is what is known about one file.
type manifestFile struct {
	sum     [sha256.Size]byte // of the content decoded
	readErr string            // why the file could not be read last time; "" if it could
	decoded decodedFile       // from the content with sum
	// good holds the objects of the last content that decoded without a
	// fatal problem; loaded says there has been one.
	good   []manifestObject
	loaded bool
}

// NewManifestSource returns a source for the folder dir. It reads nothing
// until Load or Run.
func NewManifestSource(dir string, logger *zap.Logger) *ManifestSource {
	return &ManifestSource{dir: dir, logger: logger, files: make(map[string]*manifestFile)}
}

// Load reads the folder once and returns the snapshot and the problems found.
// Files that do not parse, unknown kinds and duplicate objects are Problems;
// the error is only for a folder that cannot be read at all. Each call reads
// the folder again and keeps, per file, the objects last loaded from it.
func (s *ManifestSource) Load() (Snapshot, []Problem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.scan(nil); err != nil {
		return Snapshot{}, nil, err
	}
	snap, problems := s.snapshot()
	return snap, problems, nil
}

// Run loads the folder, calls onChange, then watches the folder and its
// subfolders and calls onChange again after every change that alters what
// was read, until ctx is done. Bursts of events are batched. onChange is
// called from Run's goroutine, one call at a time.
//
// Run returns nil when ctx is done, and an error if the folder cannot be read
// or watched at the start. Later failures to read it are logged and the last
// snapshot stays.
func (s *ManifestSource) Run(ctx context.Context, onChange func(Snapshot, []Problem)) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	defer watcher.Close()

	// Watches are added as folders are walked, before their files are read,
	// so nothing written after the first read is missed.
	s.mu.Lock()
	_, err = s.scan(watcher)
	snap, problems := s.snapshot()
	files := len(s.files)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.logger.Info("manifests loaded", zap.String("dir", s.dir), zap.Int("files", files), zap.Int("problems", len(problems)))
	onChange(snap, problems)

	var hold holdOff
	defer hold.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("watch %s: watcher closed", s.dir)
			}
			s.logger.Debug("manifests folder changed", zap.String("file", ev.Name), zap.String("op", ev.Op.String()))
			hold.arm()
		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("watch %s: watcher closed", s.dir)
			}
			// Usually an overflow of the kernel's event queue: events
			// were lost, so read everything again.
			s.logger.Warn("watching manifests folder", zap.String("dir", s.dir), zap.Error(err))
			hold.arm()
		case <-hold.c:
			hold.c = nil
			s.reread(watcher, onChange)
		}
	}
}

// holdOff batches a burst of events into one re-read. Its zero value has
// no re-read pending.
type holdOff struct {
	timer *time.Timer
	c     <-chan time.Time // the timer's channel; nil while no re-read is pending
	start time.Time        // the first event of the burst
}

// arm schedules a re-read manifestHoldOff from now, but no later than
// manifestMaxHoldOff after the first event of the burst.
func (h *holdOff) arm() {
	now := time.Now()
	if h.c == nil {
		h.start = now
	}
	wait := min(manifestHoldOff, h.start.Add(manifestMaxHoldOff).Sub(now))
	if h.timer == nil {
		h.timer = time.NewTimer(wait)
	} else {
		h.timer.Reset(wait)
	}
	h.c = h.timer.C
}

// stop stops the timer, if there is one.
func (h *holdOff) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
}

// reread reads the folder again after a burst of events and calls onChange
// if what was read changed. A folder that cannot be read is logged and the
// last snapshot stays.
func (s *ManifestSource) reread(watcher *fsnotify.Watcher, onChange func(Snapshot, []Problem)) {
	s.mu.Lock()
	changed, err := s.scan(watcher)
	var snap Snapshot
	var problems []Problem
	if changed && err == nil {
		snap, problems = s.snapshot()
	}
	files := len(s.files)
	s.mu.Unlock()
	if err != nil {
		s.logger.Error("cannot read manifests folder; keeping what was last read", zap.String("dir", s.dir), zap.Error(err))
		return
	}
	if !changed {
		return
	}
	s.logger.Info("manifests changed", zap.String("dir", s.dir), zap.Int("files", files), zap.Int("problems", len(problems)))
	onChange(snap, problems)
}

// scan walks the folder, reads every manifest file whose content changed and
// forgets the files that are gone. It reports whether anything that goes into
// the snapshot changed. With a watcher, it watches every folder it walks.
// s.mu is held.
func (s *ManifestSource) scan(watcher *fsnotify.Watcher) (bool, error) {
	paths, unreadable, err := s.walk(watcher)
	if err != nil {
		return false, err
	}
	changed := false
	seen := make(map[string]bool, len(paths))
	files := make([]*manifestFile, len(paths))
	for i, rel := range paths {
		seen[rel] = true
		f := s.files[rel]
		if f == nil {
			f = &manifestFile{}
			s.files[rel] = f
			changed = true
		}
		files[i] = f
	}
	// Decoding YAML is most of the cost of a large folder; files are
	// independent, so each CPU takes its share.
	var refreshed atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(goruntime.GOMAXPROCS(0), len(paths)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				if s.refresh(paths[i], files[i]) {
					refreshed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	changed = changed || refreshed.Load()
	var dirProblems []Problem
	for _, u := range unreadable {
		n := 0
		for rel, f := range s.files {
			if strings.HasPrefix(rel, u.rel+"/") {
				seen[rel] = true
				n += len(f.good)
			}
		}
		dirProblems = append(dirProblems, Problem{Kind: problemKindFile, Name: u.rel, Reason: ReasonInvalidManifest,
			Message: fmt.Sprintf("cannot read folder: %v; keeping the %s last loaded from it", u.err, countObjects(n))})
	}
	if !slices.Equal(dirProblems, s.dirProblems) {
		s.dirProblems = dirProblems
		changed = true
	}
	for rel := range s.files {
		if !seen[rel] {
			s.logger.Debug("manifest file removed", zap.String("file", rel))
			delete(s.files, rel)
			changed = true
		}
	}
	return changed, nil
}

// unreadableDir is a folder below the root that cannot be listed. The files
// last read from it are kept: a wrong permission is not a deletion.
type unreadableDir struct {
	rel string
	err error
}

// walk lists the manifest files below s.dir, as sorted relative paths, and
// the folders it cannot list. An error is returned only when s.dir itself
// cannot be listed.
func (s *ManifestSource) walk(watcher *fsnotify.Watcher) ([]string, []unreadableDir, error) {
	// WalkDir does not follow a root that is a link.
	root, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifests folder %s: %w", s.dir, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		if err == nil {
			err = errManifestNotDir
		}
		return nil, nil, fmt.Errorf("read manifests folder %s: %w", s.dir, err)
	}
	w := manifestWalk{logger: s.logger, root: root, watcher: watcher}
	if err := filepath.WalkDir(root, w.visit); err != nil {
		return nil, nil, fmt.Errorf("read manifests folder %s: %w", s.dir, err)
	}
	slices.Sort(w.paths)
	return w.paths, w.unreadable, nil
}

// manifestWalk is one walk of the manifests folder: what it needs and what
// it has found so far.
type manifestWalk struct {
	logger  *zap.Logger
	root    string            // the folder, its links resolved
	watcher *fsnotify.Watcher // nil: watch nothing

	paths      []string // of the manifest files, relative to root, with "/"
	unreadable []unreadableDir
}

// visit is the filepath.WalkDirFunc of the walk. Only the root's errors
// end it; a folder below that cannot be listed goes into w.unreadable.
func (w *manifestWalk) visit(path string, d fs.DirEntry, err error) error {
	if path == w.root {
		if err != nil {
			return err
		}
		if w.watcher != nil {
			if err := w.watcher.Add(path); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
		}
		return nil
	}
	rel, relErr := filepath.Rel(w.root, path)
	if relErr != nil {
		return relErr
	}
	rel = filepath.ToSlash(rel)
	if skipManifestName(d.Name()) {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	if err != nil {
		// WalkDir reports a folder it cannot list after visiting
		// it; an error before that (lstat) is a file that went away.
		if d != nil && d.IsDir() {
			w.unreadable = append(w.unreadable, unreadableDir{rel: rel, err: err})
			return filepath.SkipDir
		}
		return nil
	}
	switch {
	case d.IsDir():
		if w.watcher != nil {
			if err := w.watcher.Add(path); err != nil {
				w.logger.Warn("cannot watch folder", zap.String("file", rel), zap.Error(err))
			}
		}
		return nil
	case !isManifestName(d.Name()):
		return nil
	case d.Type()&fs.ModeSymlink != 0:
		// Follow links to files (a ConfigMap volume is links into
		// ..data), not to folders, which could loop.
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			w.logger.Debug("skipping link that is not to a file", zap.String("file", rel), zap.Error(err))
			return nil
		}
	case !d.Type().IsRegular():
		return nil // a FIFO would block the read
	}
	w.paths = append(w.paths, rel)
	return nil
}

// skipManifestName reports whether a file or folder is hidden (.git,
// ConfigMap volumes' ..data) or an editor's temporary file.
func skipManifestName(name string) bool {
	return strings.HasPrefix(name, ".") || // .git, .#emacs-lock, .vim.swp
		strings.HasSuffix(name, "~") || // backups
		(strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) || // emacs autosave
		strings.HasSuffix(name, ".swp") || strings.HasSuffix(name, ".swx")
}

// isManifestName reports whether a file name has a manifest's extension.
func isManifestName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// refresh reads one file and decodes it if its content changed. It reports
// whether anything that goes into the snapshot changed.
func (s *ManifestSource) refresh(rel string, f *manifestFile) bool {
	logger := s.logger.With(zap.String("file", rel))
	data, err := readManifest(filepath.Join(s.dir, filepath.FromSlash(rel)))
	if err != nil {
		logger.Debug("cannot read manifest file", zap.Error(err))
		msg := err.Error()
		if msg == f.readErr {
			return false
		}
		f.readErr = msg
		return true
	}
	sum := sha256.Sum256(data)
	if f.readErr == "" && sum == f.sum {
		return false
	}
	f.readErr = ""
	f.sum = sum
	f.decoded = decodeSafely(data, logger)
	if !f.decoded.failed() {
		f.good = keepUnchanged(f.good, f.decoded.objects)
		f.loaded = true
	}
	logger.Debug("manifest file read", zap.Int("objects", len(f.decoded.objects)),
		zap.Int("problems", len(f.decoded.problems)), zap.Bool("failed", f.decoded.failed()))
	return true
}

// keepUnchanged returns objects with each object that is equal to the one
// of the same kind, namespace and name in old replaced by old's pointer.
// The Applier tells changed objects from unchanged ones by pointer, so an
// edit of one EndpointSlice in a file of many objects takes its
// incremental path (see PatchEndpoints) instead of a full build.
func keepUnchanged(old, objects []manifestObject) []manifestObject {
	if len(old) == 0 {
		return objects
	}
	type key struct{ kind, namespace, name string }
	prev := make(map[key]runtime.Object, len(old))
	for _, o := range old {
		prev[key{o.kind, o.namespace, o.name}] = o.obj
	}
	for i, o := range objects {
		if p, ok := prev[key{o.kind, o.namespace, o.name}]; ok && apiequality.Semantic.DeepEqual(p, o.obj) {
			objects[i].obj = p
		}
	}
	return objects
}

// decodeSafely is decodeFile, with a panic in a decoder (a bug, which the fuzz
// test hunts for) turned into a problem rather than a crash of the proxy.
func decodeSafely(data []byte, logger *zap.Logger) (d decodedFile) {
	defer func() {
		if r := recover(); r != nil {
			logger.Error("panic decoding manifest", zap.Any("panic", r), zap.Stack("stack"))
			d = decodedFile{problems: []docProblem{{line: 1, message: fmt.Sprintf("cannot decode: %v", r), fatal: true}}}
		}
	}()
	return decodeFile(data, logger)
}

// errManifestNotDir is returned when the manifests folder is not a folder.
var errManifestNotDir = errors.New("not a directory")

// errManifestTooLarge is returned for a manifest file over maxManifestSize.
var errManifestTooLarge = fmt.Errorf("file is larger than %d MiB", maxManifestSize>>20)

// readManifest reads a file of at most maxManifestSize bytes.
func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, errManifestTooLarge
	}
	return data, nil
}

// snapshot assembles the objects of every file, in path order then document
// order, and the problems. Of two objects with the same kind, namespace and
// name, the first wins. s.mu is held.
func (s *ManifestSource) snapshot() (Snapshot, []Problem) {
	type origin struct {
		file string
		line int
	}
	type key struct{ kind, namespace, name string }

	var snap Snapshot
	var problems []Problem
	seen := make(map[key]origin)
	rels := make([]string, 0, len(s.files))
	for rel := range s.files {
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	for _, rel := range rels {
		f := s.files[rel]
		problems = append(problems, f.problems(rel)...)
		for _, o := range f.good {
			k := key{o.kind, o.namespace, o.name}
			if first, dup := seen[k]; dup {
				problems = append(problems, Problem{Kind: o.kind, Namespace: o.namespace, Name: o.name, Reason: ReasonInvalidManifest,
					Message: fmt.Sprintf("defined again in %s line %d; using the one in %s line %d", rel, o.line, first.file, first.line)})
				continue
			}
			seen[k] = origin{rel, o.line}
			switch obj := o.obj.(type) {
			case *networkingv1.Ingress:
				snap.Ingresses = append(snap.Ingresses, obj)
			case *networkingv1.IngressClass:
				snap.IngressClasses = append(snap.IngressClasses, obj)
			case *corev1.Service:
				snap.Services = append(snap.Services, obj)
			case *discoveryv1.EndpointSlice:
				snap.EndpointSlices = append(snap.EndpointSlices, obj)
			case *corev1.Secret:
				snap.Secrets = append(snap.Secrets, obj)
			case *corev1.ConfigMap:
				snap.ConfigMaps = append(snap.ConfigMaps, obj)
			case *corev1.Namespace:
				snap.Namespaces = append(snap.Namespaces, obj)
			case *gatewayv1.GatewayClass:
				snap.GatewayClasses = append(snap.GatewayClasses, obj)
			case *gatewayv1.Gateway:
				snap.Gateways = append(snap.Gateways, obj)
			case *gatewayv1.HTTPRoute:
				snap.HTTPRoutes = append(snap.HTTPRoutes, obj)
			case *gatewayv1.GRPCRoute:
				snap.GRPCRoutes = append(snap.GRPCRoutes, obj)
			case *gatewayv1.BackendTLSPolicy:
				snap.BackendTLSPolicies = append(snap.BackendTLSPolicies, obj)
			case *gatewayv1.ReferenceGrant:
				snap.ReferenceGrants = append(snap.ReferenceGrants, obj)
			}
		}
	}
	problems = append(problems, s.dirProblems...)
	return snap, problems
}

// problems returns the Problems of one file. When the file did not parse,
// each says what is served instead.
func (f *manifestFile) problems(rel string) []Problem {
	failed := f.readErr != "" || f.decoded.failed()
	instead := ""
	if failed {
		if f.loaded {
			instead = fmt.Sprintf("; keeping the %s last loaded from it", countObjects(len(f.good)))
		} else {
			instead = "; nothing is loaded from it until it is fixed"
		}
	}
	p := Problem{Kind: problemKindFile, Name: rel, Reason: ReasonInvalidManifest}
	if f.readErr != "" {
		p.Message = "cannot read: " + f.readErr + instead
		return []Problem{p}
	}
	var out []Problem
	for _, dp := range f.decoded.problems {
		p.Message = fmt.Sprintf("line %d: %s", dp.line, dp.message)
		if dp.fatal {
			p.Message += instead
		}
		out = append(out, p)
	}
	return out
}

// countObjects says "1 object" or "n objects".
func countObjects(n int) string {
	if n == 1 {
		return "1 object"
	}
	return fmt.Sprintf("%d objects", n)
}
