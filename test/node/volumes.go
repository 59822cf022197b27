package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// mountError is a volume that cannot be set up yet (its Secret or ConfigMap does not
// exist) or at all: the Pod waits in ContainerCreating with a FailedMount Event, and
// is tried again soon, so a Secret created after its Pod is picked up at once.
type mountError struct{ volume, msg string }

func (e mountError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s", e.volume, e.msg)
}

// token is a projected service-account token and when it is to be renewed (at 80%
// of its life, as the kubelet does).
type token struct {
	value string
	renew time.Time
}

// volumes writes every volume of the Pod under its folder (Secrets, ConfigMaps,
// projected sources and the downward API as files) and returns where each is; an
// emptyDir is a folder there and a hostPath the path itself.
func (w *podWorker) volumes(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var files map[string]file
		var err error
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
			dirs[v.Name] = dir
			continue
		case v.HostPath != nil:
			if v.HostPath.Type != nil && (*v.HostPath.Type == corev1.HostPathDirectoryOrCreate) {
				_ = os.MkdirAll(v.HostPath.Path, 0o755)
			}
			if _, err := os.Stat(v.HostPath.Path); err != nil {
				return nil, mountError{v.Name, fmt.Sprintf("hostPath %s: %v", v.HostPath.Path, err)}
			}
			dirs[v.Name] = v.HostPath.Path
			continue
		case v.Secret != nil:
			files, err = w.secretFiles(ctx, pod, v.Name, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional)
		case v.ConfigMap != nil:
			files, err = w.configMapFiles(ctx, pod, v.Name, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional)
		case v.DownwardAPI != nil:
			files, err = w.downwardFiles(pod, v.Name, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		case v.Projected != nil:
			files, err = w.projectedFiles(ctx, pod, v.Name, v.Projected)
		default:
			return nil, mountError{v.Name, "this volume type is not supported by the test node agent (emptyDir, hostPath, secret, configMap, downwardAPI and projected are)"}
		}
		if err != nil {
			return nil, err
		}
		if err := writeFiles(dir, files); err != nil {
			return nil, mountError{v.Name, err.Error()}
		}
		dirs[v.Name] = dir
	}
	return dirs, nil
}

type file struct {
	data []byte
	mode os.FileMode
}

func mode(item *int32, def *int32) os.FileMode {
	if item != nil {
		return os.FileMode(*item)
	}
	if def != nil {
		return os.FileMode(*def)
	}
	return 0o644
}

// keyFiles picks the files of a Secret's or ConfigMap's data: every key, or the
// items (each one required unless the source is optional).
func keyFiles(volume, what string, data map[string][]byte, items []corev1.KeyToPath, def *int32, optional bool) (map[string]file, error) {
	out := map[string]file{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = file{v, mode(nil, def)}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, mountError{volume, fmt.Sprintf("%s has no key %q", what, it.Key)}
		}
		out[it.Path] = file{v, mode(it.Mode, def)}
	}
	return out, nil
}

func (w *podWorker) secretFiles(ctx context.Context, pod *corev1.Pod, volume, name string, items []corev1.KeyToPath, def *int32, opt *bool) (map[string]file, error) {
	optional := opt != nil && *opt
	s, err := w.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional {
			return map[string]file{}, nil
		}
		return nil, mountError{volume, fmt.Sprintf("secret %q not found", name)}
	}
	if err != nil {
		return nil, mountError{volume, err.Error()}
	}
	return keyFiles(volume, "secret "+name, s.Data, items, def, optional)
}

func (w *podWorker) configMapFiles(ctx context.Context, pod *corev1.Pod, volume, name string, items []corev1.KeyToPath, def *int32, opt *bool) (map[string]file, error) {
	optional := opt != nil && *opt
	cm, err := w.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional {
			return map[string]file{}, nil
		}
		return nil, mountError{volume, fmt.Sprintf("configmap %q not found", name)}
	}
	if err != nil {
		return nil, mountError{volume, err.Error()}
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(volume, "configmap "+name, data, items, def, optional)
}

func (w *podWorker) downwardFiles(pod *corev1.Pod, volume string, items []corev1.DownwardAPIVolumeFile, def *int32) (map[string]file, error) {
	out := map[string]file{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = w.fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			c := containerNamed(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return nil, mountError{volume, fmt.Sprintf("no container %q", it.ResourceFieldRef.ContainerName)}
			}
			v, err = w.resourceValue(c, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, mountError{volume, err.Error()}
		}
		out[it.Path] = file{[]byte(v), mode(it.Mode, def)}
	}
	return out, nil
}

func (w *podWorker) projectedFiles(ctx context.Context, pod *corev1.Pod, volume string, p *corev1.ProjectedVolumeSource) (map[string]file, error) {
	out := map[string]file{}
	for _, src := range p.Sources {
		var part map[string]file
		var err error
		switch {
		case src.Secret != nil:
			part, err = w.secretFiles(ctx, pod, volume, src.Secret.Name, src.Secret.Items, p.DefaultMode, src.Secret.Optional)
		case src.ConfigMap != nil:
			part, err = w.configMapFiles(ctx, pod, volume, src.ConfigMap.Name, src.ConfigMap.Items, p.DefaultMode, src.ConfigMap.Optional)
		case src.DownwardAPI != nil:
			part, err = w.downwardFiles(pod, volume, src.DownwardAPI.Items, p.DefaultMode)
		case src.ServiceAccountToken != nil:
			var t string
			t, err = w.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			part = map[string]file{src.ServiceAccountToken.Path: {[]byte(t), mode(nil, p.DefaultMode)}}
		default:
			err = mountError{volume, "this projected source is not supported by the test node agent"}
		}
		if err != nil {
			return nil, err
		}
		for k, v := range part {
			out[k] = v
		}
	}
	return out, nil
}

// serviceAccountToken asks the API server for a token of the Pod's service account,
// bound to the Pod, and keeps it until 80% of its life has passed.
func (w *podWorker) serviceAccountToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	key := src.Audience + "\x00" + src.Path
	if t, ok := w.tokens[key]; ok && time.Now().Before(t.renew) {
		return t.value, nil
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(exp),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	got, err := w.a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", mountError{"token", fmt.Sprintf("token of service account %s/%s: %v", pod.Namespace, sa, err)}
	}
	life := time.Until(got.Status.ExpirationTimestamp.Time)
	w.tokens[key] = token{value: got.Status.Token, renew: time.Now().Add(life * 8 / 10)}
	return got.Status.Token, nil
}

// writeFiles makes dir hold exactly files: each written to a temporary name and
// renamed, so a reader never sees half a file; files no longer there are removed.
func writeFiles(dir string, files map[string]file) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	keep := map[string]bool{}
	for _, n := range names {
		clean := filepath.Clean(n)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("path %q leaves the volume", n)
		}
		f := files[n]
		path := filepath.Join(dir, clean)
		keep[path] = true
		if old, err := os.ReadFile(path); err == nil && string(old) == string(f.data) {
			_ = os.Chmod(path, f.mode)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(path), ".."+filepath.Base(path)+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !keep[path] {
			return os.Remove(path)
		}
		return nil
	})
}

func containerNamed(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if name == "" || pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
