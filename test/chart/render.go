// Package chart renders the Helm chart in charts/postern with a real helm
// binary and decodes what it renders into typed Kubernetes objects. Its own
// tests (`make chart`) check the rendered objects offline; the end-to-end
// tests use it to send them to a real API server and to run postern with the
// RBAC and the command line the chart gives it.
package chart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Helm runs one helm binary with its state (repositories, cache, plugins)
// kept in a folder of its own, so that tests never read or write the
// user's ~/.config/helm.
type Helm struct {
	// Bin is the helm binary.
	Bin string
	// Home holds helm's cache, config and data folders; empty means the
	// user's.
	Home string
	// Kubeconfig is the cluster of install and uninstall; empty means none.
	Kubeconfig string
}

// Run runs helm with args and returns its standard output; on failure the
// error holds standard error.
func (h Helm) Run(ctx context.Context, args ...string) (string, error) {
	if h.Kubeconfig != "" {
		args = append([]string{"--kubeconfig", h.Kubeconfig}, args...)
	}
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	cmd.Env = os.Environ()
	if h.Home != "" {
		cmd.Env = append(cmd.Env,
			"HELM_CACHE_HOME="+h.Home+"/cache",
			"HELM_CONFIG_HOME="+h.Home+"/config",
			"HELM_DATA_HOME="+h.Home+"/data")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Template renders chartDir as release in namespace with the extra helm
// arguments (-f values.yaml, --set k=v) and decodes the result.
func (h Helm) Template(ctx context.Context, chartDir, release, namespace string, args ...string) (*Manifest, error) {
	out, err := h.Run(ctx, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return Decode([]byte(out))
}

// Manifest is a rendered chart: its YAML, and its documents decoded.
type Manifest struct {
	// YAML is the whole rendering, as helm printed it.
	YAML string
	// Objects are its documents, in order. Kinds known to client-go are
	// typed (*appsv1.Deployment, ...); others are *unstructured.Unstructured.
	Objects []runtime.Object
	// Docs are the documents' YAML, one per object.
	Docs []string
}

// strict rejects unknown and duplicate fields: a misspelt or misplaced key
// in a template is an error here rather than silently dropped by the API
// server.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// Decode splits a multi-document YAML stream and decodes each document.
func Decode(data []byte) (*Manifest, error) {
	m := &Manifest{YAML: string(data)}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split documents: %w", err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("parse document: %w\n%s", err, doc)
		}
		if len(probe) == 0 {
			continue // only comments
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		switch {
		case err == nil:
			obj.GetObjectKind().SetGroupVersionKind(*gvk)
		case runtime.IsNotRegisteredError(err):
			u := &unstructured.Unstructured{}
			if err := yaml.UnmarshalStrict(doc, &u.Object); err != nil {
				return nil, fmt.Errorf("decode %s: %w", firstLine(doc), err)
			}
			obj = u
		default:
			return nil, fmt.Errorf("decode: %w\n%s", err, doc)
		}
		m.Objects = append(m.Objects, obj)
		m.Docs = append(m.Docs, string(doc))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// All returns the objects of type T, in order.
func All[T runtime.Object](m *Manifest) []T {
	var out []T
	for _, o := range m.Objects {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// Kinds returns "Kind namespace/name" of every object, in order.
func (m *Manifest) Kinds() []string {
	out := make([]string, 0, len(m.Objects))
	for _, o := range m.Objects {
		meta, _ := o.(interface {
			GetNamespace() string
			GetName() string
		})
		kind := o.GetObjectKind().GroupVersionKind().Kind
		if meta == nil {
			out = append(out, kind)
			continue
		}
		out = append(out, fmt.Sprintf("%s %s/%s", kind, meta.GetNamespace(), meta.GetName()))
	}
	return out
}

// PodTemplate returns the pod template of the one Deployment or DaemonSet.
func (m *Manifest) PodTemplate() (*corev1.PodTemplateSpec, error) {
	var found []*corev1.PodTemplateSpec
	for _, d := range All[*appsv1.Deployment](m) {
		found = append(found, &d.Spec.Template)
	}
	for _, d := range All[*appsv1.DaemonSet](m) {
		found = append(found, &d.Spec.Template)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want one Deployment or DaemonSet, found %d in %v", len(found), m.Kinds())
	}
	return found[0], nil
}

// Container returns the postern container of the pod template.
func (m *Manifest) Container() (*corev1.Container, error) {
	pt, err := m.PodTemplate()
	if err != nil {
		return nil, err
	}
	for i := range pt.Spec.Containers {
		if pt.Spec.Containers[i].Name == "postern" {
			return &pt.Spec.Containers[i], nil
		}
	}
	return nil, errors.New("no container named postern")
}

// Args returns the postern container's arguments.
func (m *Manifest) Args() ([]string, error) {
	c, err := m.Container()
	if err != nil {
		return nil, err
	}
	return c.Args, nil
}

// Flag returns the value of --name=value in args, and whether it is there.
func Flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "", true
		}
	}
	return "", false
}
