package main

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// configError is a container that cannot be started as written (a missing Secret or
// key in its environment, an unsupported probe): CreateContainerConfigError.
type configError struct{ msg string }

func (e configError) Error() string { return e.msg }

// environment is a container's environment as the kubelet makes it: a clean one (no
// variable of the agent's own), HOSTNAME, the API server's Service variables, then
// envFrom, then env, each value able to refer to those before it with $(NAME).
func (w *podWorker) environment(ctx context.Context, pod *corev1.Pod, c *corev1.Container) ([]string, error) {
	host, port, _ := net.SplitHostPort(w.a.c.apiServer)
	order := []string{}
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", podHostname(pod))
	set("KUBERNETES_SERVICE_HOST", host)
	set("KUBERNETES_SERVICE_PORT", port)
	set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	set("KUBERNETES_PORT", "tcp://"+net.JoinHostPort(host, port))
	set("KUBERNETES_PORT_"+port+"_TCP", "tcp://"+net.JoinHostPort(host, port))
	set("KUBERNETES_PORT_"+port+"_TCP_PROTO", "tcp")
	set("KUBERNETES_PORT_"+port+"_TCP_PORT", port)
	set("KUBERNETES_PORT_"+port+"_TCP_ADDR", host)

	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := w.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				continue
			}
			if err != nil {
				return nil, configError{fmt.Sprintf("configmap %q not found", from.ConfigMapRef.Name)}
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := w.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
				continue
			}
			if err != nil {
				return nil, configError{fmt.Sprintf("secret %q not found", from.SecretRef.Name)}
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			set(from.Prefix+k, v)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vals))
			continue
		}
		v, skip, err := w.envValue(ctx, pod, c, e.ValueFrom)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

func (w *podWorker) envValue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, from *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case from.FieldRef != nil:
		v, err := w.fieldValue(pod, from.FieldRef.FieldPath)
		return v, false, err
	case from.ResourceFieldRef != nil:
		v, err := w.resourceValue(c, from.ResourceFieldRef)
		return v, false, err
	case from.ConfigMapKeyRef != nil:
		r := from.ConfigMapKeyRef
		return keyValue("configmap", "ConfigMap", pod.Namespace, r.Name, r.Key, r.Optional, func() (map[string]string, error) {
			cm, err := w.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return cm.Data, nil
		})
	case from.SecretKeyRef != nil:
		r := from.SecretKeyRef
		return keyValue("secret", "Secret", pod.Namespace, r.Name, r.Key, r.Optional, func() (map[string]string, error) {
			s, err := w.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			data := make(map[string]string, len(s.Data))
			for k, v := range s.Data {
				data[k] = string(v)
			}
			return data, nil
		})
	}
	return "", false, configError{"an env valueFrom with no source"}
}

// keyValue is one key of a ConfigMap's or Secret's data (from get), with the
// kubelet's messages when it or the key is missing; an optional one is skipped.
func keyValue(kind, title, ns, name, key string, opt *bool, get func() (map[string]string, error)) (string, bool, error) {
	optional := opt != nil && *opt
	data, err := get()
	if err != nil {
		if optional && apierrors.IsNotFound(err) {
			return "", true, nil
		}
		return "", false, configError{fmt.Sprintf("%s %q not found", kind, name)}
	}
	v, ok := data[key]
	if !ok {
		if optional {
			return "", true, nil
		}
		return "", false, configError{fmt.Sprintf("couldn't find key %s in %s %s/%s", key, title, ns, name)}
	}
	return v, false, nil
}

// fieldValue is the downward API: a field of the Pod by its path.
func (w *podWorker) fieldValue(pod *corev1.Pod, path string) (string, error) {
	ip := w.podIP()
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return w.a.net.nodeIP.String(), nil
	case "status.podIP", "status.podIPs":
		return ip, nil
	case "metadata.labels", "metadata.annotations":
		m := pod.Labels
		if path == "metadata.annotations" {
			m = pod.Annotations
		}
		var b strings.Builder
		for _, k := range sortedKeys(m) {
			fmt.Fprintf(&b, "%s=%q\n", k, m[k])
		}
		return b.String(), nil
	}
	for _, p := range []string{"metadata.labels", "metadata.annotations"} {
		if rest, ok := strings.CutPrefix(path, p+"['"); ok && strings.HasSuffix(rest, "']") {
			key := strings.TrimSuffix(rest, "']")
			if p == "metadata.labels" {
				return pod.Labels[key], nil
			}
			return pod.Annotations[key], nil
		}
	}
	return "", configError{fmt.Sprintf("unsupported fieldRef %q", path)}
}

// resourceValue is a container's limit or request, the Node's capacity for a limit
// that is not set, in the divisor's units rounded up, as the kubelet gives it.
func (w *podWorker) resourceValue(c *corev1.Container, r *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(r.Resource, ".")
	if !ok {
		return "", configError{fmt.Sprintf("unsupported resourceFieldRef %q", r.Resource)}
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		switch name {
		case "cpu":
			q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
		case "memory":
			q = *resource.NewQuantity(memTotal(), resource.BinarySI)
		default:
			q = resource.MustParse("0")
		}
	}
	div := r.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	v := (q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()
	return strconv.FormatInt(v, 10), nil
}

// expand replaces $(NAME) with NAME's value where it is known and $$ with $, as
// Kubernetes expands command, args and env values; an unknown reference stays as
// written.
func expand(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	if len(pod.Name) > 63 {
		return strings.TrimRight(pod.Name[:63], "-.")
	}
	return pod.Name
}
