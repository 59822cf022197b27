package controller

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/postern-dev/postern/proxy/route"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from what Build returns")

// goldenNow is the time the golden cases check certificates against,
// unless their options.yaml sets "now".
var goldenNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// minGoldenCases guards against a glob that silently matches nothing.
const minGoldenCases = 34

// goldenDecoder decodes the kinds a Snapshot holds, into the real API types.
var goldenDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, discoveryv1.AddToScheme, networkingv1.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s).UniversalDeserializer()
}()

// goldenSnapshot decodes a multi-document YAML manifest into a Snapshot.
// When strict, a document that does not decode to a kind a Snapshot holds
// is an error; otherwise it is skipped.
func goldenSnapshot(data []byte, strict bool) (Snapshot, error) {
	var snap Snapshot
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return snap, nil
		}
		if err != nil {
			if strict {
				return snap, fmt.Errorf("document %d: %w", i, err)
			}
			return snap, nil
		}
		if j, err := yaml.YAMLToJSON(doc); err == nil && (string(j) == "null" || string(j) == "{}") {
			continue // only comments
		}
		obj, _, err := goldenDecoder.Decode(doc, nil, nil)
		if err != nil {
			if strict {
				return snap, fmt.Errorf("document %d: %w", i, err)
			}
			continue
		}
		switch o := obj.(type) {
		case *networkingv1.Ingress:
			snap.Ingresses = append(snap.Ingresses, o)
		case *networkingv1.IngressClass:
			snap.IngressClasses = append(snap.IngressClasses, o)
		case *corev1.Service:
			snap.Services = append(snap.Services, o)
		case *discoveryv1.EndpointSlice:
			snap.EndpointSlices = append(snap.EndpointSlices, o)
		case *corev1.Secret:
			snap.Secrets = append(snap.Secrets, o)
		case *corev1.ConfigMap:
			snap.ConfigMaps = append(snap.ConfigMaps, o)
		case *corev1.Namespace:
			snap.Namespaces = append(snap.Namespaces, o)
		case *gatewayv1.GatewayClass:
			snap.GatewayClasses = append(snap.GatewayClasses, o)
		case *gatewayv1.Gateway:
			snap.Gateways = append(snap.Gateways, o)
		case *gatewayv1.HTTPRoute:
			snap.HTTPRoutes = append(snap.HTTPRoutes, o)
		case *gatewayv1.GRPCRoute:
			snap.GRPCRoutes = append(snap.GRPCRoutes, o)
		case *gatewayv1.BackendTLSPolicy:
			snap.BackendTLSPolicies = append(snap.BackendTLSPolicies, o)
		case *gatewayv1.ReferenceGrant:
			snap.ReferenceGrants = append(snap.ReferenceGrants, o)
		default:
			if strict {
				return snap, fmt.Errorf("document %d: %T is not a kind a snapshot holds", i, obj)
			}
		}
	}
}

// loadGoldenCase reads testdata/<name>: the snapshot and the options.
func loadGoldenCase(t testing.TB, name string) (Snapshot, Options) {
	t.Helper()
	dir := filepath.Join("testdata", name)
	data, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := goldenSnapshot(data, true)
	if err != nil {
		t.Fatalf("%s/input.yaml: %v", dir, err)
	}
	var opts Options
	if data, err := os.ReadFile(filepath.Join(dir, "options.yaml")); err == nil {
		if err := yaml.UnmarshalStrict(data, &opts); err != nil {
			t.Fatalf("%s/options.yaml: %v", dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if opts.Now.IsZero() {
		opts.Now = goldenNow
	}
	return snap, opts
}

// renderGolden returns the table and the problems as the golden files hold them.
// It cannot fail on what Build returns; if it did, the error text would
// make the comparison fail.
func renderGolden(tbl *route.Table, problems []Problem) (table, probs []byte) {
	if problems == nil {
		problems = []Problem{}
	}
	return goldenYAML(tbl), goldenYAML(problems)
}

func goldenYAML(v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return []byte("error: " + err.Error())
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return []byte("error: " + err.Error())
	}
	return y
}

func TestBuildGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < minGoldenCases {
		t.Fatalf("found %d golden cases, want at least %d", len(inputs), minGoldenCases)
	}
	for _, in := range inputs {
		name := filepath.Base(filepath.Dir(in))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			snap, opts := loadGoldenCase(t, name)
			before := copySnapshot(snap)
			tbl, problems, status := build(snap, opts)
			table, probs := renderGolden(tbl, problems)
			if !reflect.DeepEqual(before, snap) {
				t.Errorf("Build changed the snapshot")
			}
			checkGolden(t, filepath.Join("testdata", name, "want.yaml"), table)
			checkGolden(t, filepath.Join("testdata", name, "problems.yaml"), probs)
			if len(snap.GatewayClasses)+len(snap.Gateways)+len(snap.HTTPRoutes)+len(snap.GRPCRoutes)+len(snap.BackendTLSPolicies) > 0 {
				// The Gateway API cases also pin the status to write.
				checkGolden(t, filepath.Join("testdata", name, "status.yaml"), goldenYAML(status))
			}

			// Determinism: again, and on shuffled copies of the snapshot.
			if t2, p2 := renderGolden(Build(snap, opts)); !bytes.Equal(t2, table) || !bytes.Equal(p2, probs) {
				t.Errorf("a second Build of the same snapshot differs:\n%s%s", goldenDiff(string(table), string(t2)), goldenDiff(string(probs), string(p2)))
			}
			wantStatus := goldenYAML(status)
			for seed := range uint64(4) {
				s := shuffleSnapshot(snap, seed)
				t2, pr2, st2 := build(s, opts)
				if t2, p2 := renderGolden(t2, pr2); !bytes.Equal(t2, table) || !bytes.Equal(p2, probs) {
					t.Errorf("Build of the snapshot shuffled with seed %d differs:\n%s%s", seed, goldenDiff(string(table), string(t2)), goldenDiff(string(probs), string(p2)))
				}
				if got := goldenYAML(st2); !bytes.Equal(got, wantStatus) {
					t.Errorf("the Gateway API status of the snapshot shuffled with seed %d differs:\n%s", seed, goldenDiff(string(wantStatus), string(got)))
				}
			}
		})
	}
}

// checkGolden compares got with the golden file at path, or rewrites the
// file with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controller -run TestBuildGolden -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, goldenDiff(string(want), string(got)))
	}
}

// copySnapshot deep-copies every object of s.
func copySnapshot(s Snapshot) Snapshot {
	return Snapshot{
		Ingresses:          deepCopyAll(s.Ingresses, (*networkingv1.Ingress).DeepCopy),
		IngressClasses:     deepCopyAll(s.IngressClasses, (*networkingv1.IngressClass).DeepCopy),
		Services:           deepCopyAll(s.Services, (*corev1.Service).DeepCopy),
		EndpointSlices:     deepCopyAll(s.EndpointSlices, (*discoveryv1.EndpointSlice).DeepCopy),
		Secrets:            deepCopyAll(s.Secrets, (*corev1.Secret).DeepCopy),
		ConfigMaps:         deepCopyAll(s.ConfigMaps, (*corev1.ConfigMap).DeepCopy),
		Namespaces:         deepCopyAll(s.Namespaces, (*corev1.Namespace).DeepCopy),
		GatewayClasses:     deepCopyAll(s.GatewayClasses, (*gatewayv1.GatewayClass).DeepCopy),
		Gateways:           deepCopyAll(s.Gateways, (*gatewayv1.Gateway).DeepCopy),
		HTTPRoutes:         deepCopyAll(s.HTTPRoutes, (*gatewayv1.HTTPRoute).DeepCopy),
		GRPCRoutes:         deepCopyAll(s.GRPCRoutes, (*gatewayv1.GRPCRoute).DeepCopy),
		BackendTLSPolicies: deepCopyAll(s.BackendTLSPolicies, (*gatewayv1.BackendTLSPolicy).DeepCopy),
		ReferenceGrants:    deepCopyAll(s.ReferenceGrants, (*gatewayv1.ReferenceGrant).DeepCopy),
	}
}

func deepCopyAll[T any](in []*T, deepCopy func(*T) *T) []*T {
	if in == nil {
		return nil
	}
	out := make([]*T, len(in))
	for i, o := range in {
		out[i] = deepCopy(o)
	}
	return out
}

// shuffleSnapshot returns s with every slice in another order.
func shuffleSnapshot(s Snapshot, seed uint64) Snapshot {
	r := rand.New(rand.NewPCG(seed, 0x9057e5))
	c := Snapshot{
		Ingresses:          slices.Clone(s.Ingresses),
		IngressClasses:     slices.Clone(s.IngressClasses),
		Services:           slices.Clone(s.Services),
		EndpointSlices:     slices.Clone(s.EndpointSlices),
		Secrets:            slices.Clone(s.Secrets),
		ConfigMaps:         slices.Clone(s.ConfigMaps),
		Namespaces:         slices.Clone(s.Namespaces),
		GatewayClasses:     slices.Clone(s.GatewayClasses),
		Gateways:           slices.Clone(s.Gateways),
		HTTPRoutes:         slices.Clone(s.HTTPRoutes),
		GRPCRoutes:         slices.Clone(s.GRPCRoutes),
		BackendTLSPolicies: slices.Clone(s.BackendTLSPolicies),
		ReferenceGrants:    slices.Clone(s.ReferenceGrants),
	}
	if seed == 0 {
		slices.Reverse(c.GatewayClasses)
		slices.Reverse(c.Gateways)
		slices.Reverse(c.HTTPRoutes)
		slices.Reverse(c.GRPCRoutes)
		slices.Reverse(c.BackendTLSPolicies)
		slices.Reverse(c.ReferenceGrants)
		slices.Reverse(c.Ingresses)
		slices.Reverse(c.IngressClasses)
		slices.Reverse(c.Services)
		slices.Reverse(c.EndpointSlices)
		slices.Reverse(c.ConfigMaps)
		return c
	}
	r.Shuffle(len(c.Ingresses), func(i, j int) { c.Ingresses[i], c.Ingresses[j] = c.Ingresses[j], c.Ingresses[i] })
	r.Shuffle(len(c.IngressClasses), func(i, j int) { c.IngressClasses[i], c.IngressClasses[j] = c.IngressClasses[j], c.IngressClasses[i] })
	r.Shuffle(len(c.Services), func(i, j int) { c.Services[i], c.Services[j] = c.Services[j], c.Services[i] })
	r.Shuffle(len(c.EndpointSlices), func(i, j int) { c.EndpointSlices[i], c.EndpointSlices[j] = c.EndpointSlices[j], c.EndpointSlices[i] })
	r.Shuffle(len(c.ConfigMaps), func(i, j int) { c.ConfigMaps[i], c.ConfigMaps[j] = c.ConfigMaps[j], c.ConfigMaps[i] })
	r.Shuffle(len(c.GatewayClasses), func(i, j int) { c.GatewayClasses[i], c.GatewayClasses[j] = c.GatewayClasses[j], c.GatewayClasses[i] })
	r.Shuffle(len(c.Gateways), func(i, j int) { c.Gateways[i], c.Gateways[j] = c.Gateways[j], c.Gateways[i] })
	r.Shuffle(len(c.HTTPRoutes), func(i, j int) { c.HTTPRoutes[i], c.HTTPRoutes[j] = c.HTTPRoutes[j], c.HTTPRoutes[i] })
	r.Shuffle(len(c.GRPCRoutes), func(i, j int) { c.GRPCRoutes[i], c.GRPCRoutes[j] = c.GRPCRoutes[j], c.GRPCRoutes[i] })
	r.Shuffle(len(c.BackendTLSPolicies), func(i, j int) {
		c.BackendTLSPolicies[i], c.BackendTLSPolicies[j] = c.BackendTLSPolicies[j], c.BackendTLSPolicies[i]
	})
	r.Shuffle(len(c.ReferenceGrants), func(i, j int) {
		c.ReferenceGrants[i], c.ReferenceGrants[j] = c.ReferenceGrants[j], c.ReferenceGrants[i]
	})
	return c
}

// goldenDiff returns a line diff of want and got: "-" lines only in want, "+"
// lines only in got, and up to two lines of context around each change.
func goldenDiff(want, got string) string {
	if want == got {
		return ""
	}
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	const context = 2
	var sb strings.Builder
	last := -1
	for k, l := range lines {
		near := false
		for d := max(0, k-context); d <= min(len(lines)-1, k+context); d++ {
			if lines[d].op != ' ' {
				near = true
				break
			}
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			sb.WriteString("  ...\n")
		}
		fmt.Fprintf(&sb, "%c %s\n", l.op, l.text)
		last = k
	}
	return sb.String()
}

func TestGoldenDiff(t *testing.T) {
	t.Parallel()
	got := goldenDiff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n")
	want := "  b\n  c\n- d\n+ D\n  e\n  f\n"
	if got != want {
		t.Errorf("goldenDiff:\n%s\nwant:\n%s", got, want)
	}
	if d := goldenDiff("same\n", "same\n"); d != "" {
		t.Errorf("goldenDiff of equal texts = %q, want empty", d)
	}
}

// TestBuildLookup matches requests against built tables, so that the
// precedence rules are tested end to end from Ingress objects.
func TestBuildLookup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		golden, host, path string
		want               string // "namespace/ingress service", or "" for 404
	}{
		// An exact host beats a wildcard; a wildcard matches one label only.
		{"host-wildcard", "foo.example.com", "/", "shop/exact foo"},
		{"host-wildcard", "bar.example.com", "/", "shop/wild wild"},
		{"host-wildcard", "BAR.Example.com:8443", "/x", "shop/wild wild"},
		{"host-wildcard", "a.bar.example.com", "/", ""},
		{"host-wildcard", "example.com", "/", ""},
		// The exact host's paths first, then the wildcard's.
		{"host-wildcard", "foo.example.com", "/only-wild", "shop/exact foo"},
		// Longest path wins; Exact beats Prefix on equal length.
		{"path-longest-wins", "app.example.com", "/", "shop/paths root"},
		{"path-longest-wins", "app.example.com", "/api", "shop/paths api"},
		{"path-longest-wins", "app.example.com", "/api/v1", "shop/paths v1"},
		{"path-longest-wins", "app.example.com", "/api/v1/users", "shop/paths v1"},
		{"path-longest-wins", "app.example.com", "/api/v10", "shop/paths api"},
		{"path-longest-wins", "app.example.com", "/apis", "shop/paths root"},
		{"path-exact-vs-prefix", "app.example.com", "/foo", "shop/paths exact"},
		{"path-exact-vs-prefix", "app.example.com", "/foo/", "shop/paths prefix"},
		{"path-exact-vs-prefix", "app.example.com", "/foo/bar", "shop/paths prefix"},
		{"path-exact-vs-prefix", "app.example.com", "/foobar", ""},
		// A trailing slash in a Prefix path is ignored.
		{"path-prefix-trailing-slash", "app.example.com", "/docs", "shop/old docs-old"},
		{"path-prefix-trailing-slash", "app.example.com", "/docs/x", "shop/old docs-old"},
		// Rules without a host serve every host, after its own rules.
		{"catch-all-host", "app.example.com", "/app/x", "shop/app app"},
		{"catch-all-host", "app.example.com", "/healthz", "shop/any health"},
		{"catch-all-host", "app.example.com", "/", ""},
		{"catch-all-host", "other.example.org", "/healthz", "shop/any health"},
		{"catch-all-host", "10.1.2.3", "/healthz", "shop/any health"},
		{"catch-all-host", "other.example.org", "/", ""},
		// The default backend serves what no rule matches.
		{"default-backend", "nowhere.example.com", "/x", "shop/fallback fallback"},
		{"default-backend", "app.example.com", "/", "shop/app app"},
		// A route whose Service is missing still claims its path (503).
		{"service-missing", "app.example.com", "/api/x", "shop/web api"},
		// Oldest Ingress wins a conflict.
		{"conflict-oldest-wins", "app.example.com", "/", "shop/z-old old"},
	}
	for _, tt := range tests {
		t.Run(tt.golden+" "+tt.host+tt.path, func(t *testing.T) {
			t.Parallel()
			snap, opts := loadGoldenCase(t, tt.golden)
			tbl, _ := Build(snap, opts)
			r := tbl.Lookup(tt.host, tt.path, nil)
			got := ""
			if r != nil {
				got = r.Source.String() + " " + r.First().Service
			}
			if got != tt.want {
				t.Errorf("Lookup(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
			}
		})
	}
}

// fuzzOptions turn on everything Build can do.
var fuzzOptions = Options{Now: goldenNow, ACME: true, DefaultCertificate: "shop/app-tls"}

// FuzzBuild decodes a manifest and builds it: Build must not panic, must
// not change its input, and must give the same answer twice and in any
// order of the objects.
func FuzzBuild(f *testing.F) {
	inputs, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, _ := goldenSnapshot(data, false)
		before := copySnapshot(snap)
		tbl, problems := Build(snap, fuzzOptions)
		table, probs := renderGolden(tbl, problems)
		if !reflect.DeepEqual(before, snap) {
			t.Fatal("Build changed the snapshot")
		}
		if t2, p2 := renderGolden(Build(snap, fuzzOptions)); !bytes.Equal(t2, table) || !bytes.Equal(p2, probs) {
			t.Fatalf("a second Build differs:\n%s%s", goldenDiff(string(table), string(t2)), goldenDiff(string(probs), string(p2)))
		}
		if t2, p2 := renderGolden(Build(shuffleSnapshot(snap, 0), fuzzOptions)); !bytes.Equal(t2, table) || !bytes.Equal(p2, probs) {
			t.Fatalf("Build of the reversed snapshot differs:\n%s%s", goldenDiff(string(table), string(t2)), goldenDiff(string(probs), string(p2)))
		}
		checkBuiltTable(t, tbl)
		for _, p := range problems {
			if p.Kind == "" || p.Reason == "" || p.Message == "" || strings.ContainsAny(p.Message, "\n\r") || len(p.Message) > 1024 {
				t.Fatalf("bad problem: %q", p.String())
			}
		}
	})
}

// checkBuiltTable checks what every built table must satisfy.
func checkBuiltTable(t *testing.T, tbl *route.Table) {
	t.Helper()
	check := func(host string, r *route.Route) {
		if r.First() == nil {
			t.Fatalf("host %q path %q: no backend", host, r.Path)
		}
		if r.First().Unavailable != "" && len(r.First().Endpoints) > 0 {
			t.Fatalf("host %q path %q: unavailable backend with endpoints", host, r.Path)
		}
		if !slices.IsSortedFunc(r.First().Endpoints, func(a, b route.Endpoint) int { return strings.Compare(a.Address, b.Address) }) {
			t.Fatalf("backend %s: endpoints not sorted", r.First().Key)
		}
	}
	for _, vh := range tbl.VirtualHosts {
		if route.NormalizeHost(vh.Host) != vh.Host || strings.ContainsAny(vh.Host, ":/[") {
			t.Fatalf("host %q is not normalised", vh.Host)
		}
		for _, r := range vh.Routes {
			check(vh.Host, r)
			path := r.Path
			if r.PathType == route.PathRegex {
				if _, err := route.CompilePath(path); err != nil {
					t.Fatalf("host %q: regex path %q: %v", vh.Host, path, err)
				}
				// ingress-nginx's case-insensitive, start-anchored
				// expression, or a Gateway API one, anchored at both ends.
				var ok bool
				if path, ok = strings.CutPrefix(path, "(?i)^"); !ok {
					if !strings.HasPrefix(path, "^") || !strings.HasSuffix(path, "$") {
						t.Fatalf("host %q: regex path %q is neither an Ingress's (?i)^ expression nor a Gateway API route's ^…$ one", vh.Host, r.Path)
					}
					continue
				}
			}
			if msg := pathProblem(path); msg != "" {
				t.Fatalf("host %q: path %q %s", vh.Host, r.Path, msg)
			}
		}
	}
	if tbl.Default != nil {
		check("", tbl.Default)
	}
}
