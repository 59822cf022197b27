// Package dockerfile checks Postern's Dockerfile without a Docker engine or
// a registry: BuildKit's own Dockerfile checks (the rules `docker build
// --check` runs) through its dockerfile2llb library, with base-image
// metadata that is made up here rather than fetched; and the go build line
// of the Dockerfile, which must be the Makefile's and is run here on the
// build context that .dockerignore leaves. It is a module of its own so
// that the main go.mod does not carry BuildKit.
package dockerfile

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/subrequests/lint"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a base image the offline resolver knows: the metadata a
// registry would return for it.
type Image struct {
	// Env is the image's environment, which later instructions may use.
	Env []string
	// User is the image's USER; empty means root.
	User string
}

// OfflineResolver answers BuildKit's base-image metadata requests from a
// fixed table and never reaches a registry: an image not in the table is
// an error, so a new base image has to be added here knowingly.
type OfflineResolver struct {
	// Images by reference as written in FROM, after ARG expansion.
	Images map[string]Image
}

var _ llb.ImageMetaResolver = (*OfflineResolver)(nil)

// ResolveImageConfig returns a made-up image config for ref, for the
// platform asked for (so that BuildKit's InvalidBaseImagePlatform check
// sees a match, as it would with a multi-platform image).
func (r *OfflineResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	img, ok := r.Images[ref]
	if !ok {
		return "", "", nil, fmt.Errorf("offline resolver: unknown base image %q (add it to the resolver's table)", ref)
	}
	p := platforms.DefaultSpec()
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		p = *opt.ImageOpt.Platform
	}
	cfg := ocispecs.Image{
		Platform: p,
		Config:   ocispecs.ImageConfig{Env: img.Env, User: img.User},
		RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString(ref)}},
	}
	dt, err := json.Marshal(cfg)
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(dt), dt, nil
}

// Warning is one finding of BuildKit's Dockerfile checks.
type Warning struct {
	// Rule is the check's name, such as "JSONArgsRecommended".
	Rule string
	// Detail says what is wrong.
	Detail string
	// Line is the first Dockerfile line it is about; 0 if unknown.
	Line int
	// URL documents the rule.
	URL string
}

func (w Warning) String() string {
	return fmt.Sprintf("line %d: %s: %s (%s)", w.Line, w.Rule, w.Detail, w.URL)
}

// Lint runs BuildKit's Dockerfile checks on dt, for every stage, with the
// build arguments given, resolving base images with r. It returns the
// warnings, and an error when BuildKit could not even convert the file
// (a syntax error, an unknown base image).
func Lint(ctx context.Context, dt []byte, buildArgs map[string]string, r *OfflineResolver) ([]Warning, error) {
	caps := pb.Caps.CapSet(pb.Caps.All())
	// Warnings point into the Dockerfile through a source map, whose
	// definition is the local source the file came from, as in dockerui.
	src := llb.Local("dockerfile")
	def, err := src.Marshal(ctx)
	if err != nil {
		return nil, fmt.Errorf("source map: %w", err)
	}
	sourceMap := llb.NewSourceMap(&src, "Dockerfile", "Dockerfile", dt)
	sourceMap.Definition = def
	target := platforms.DefaultSpec()
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		Config: dockerui.Config{
			BuildArgs:       buildArgs,
			BuildPlatforms:  []ocispecs.Platform{platforms.DefaultSpec()},
			TargetPlatforms: []ocispecs.Platform{target},
		},
		TargetPlatform: &target,
		MetaResolver:   r,
		LLBCaps:        &caps,
		SourceMap:      sourceMap,
	})
	if err != nil {
		return nil, err
	}
	return warnings(res)
}

func warnings(res *lint.LintResults) ([]Warning, error) {
	out := make([]Warning, 0, len(res.Warnings))
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		out = append(out, Warning{Rule: w.RuleName, Detail: strings.TrimSpace(w.Detail), Line: line, URL: w.URL})
	}
	if res.Error != nil {
		// With `# check=error=true` the warnings also come back as an error.
		return out, fmt.Errorf("dockerfile does not convert: %s %v", res.Error.Message, out)
	}
	return out, nil
}
