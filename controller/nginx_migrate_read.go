package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// MigrationInput is what `postern migrate` reads, from a folder of
// manifests or from a cluster.
type MigrationInput struct {
	// Ingresses of every class.
	Ingresses []*networkingv1.Ingress
	// IngressClasses decide which Ingresses are of the class asked for.
	IngressClasses []*networkingv1.IngressClass
	// ConfigMap is ingress-nginx's controller ConfigMap; nil when none was
	// asked for.
	ConfigMap *corev1.ConfigMap
}

// ErrConfigMapNotFound is returned when the ConfigMap asked for is not in
// the folder or the cluster.
var ErrConfigMapNotFound = errors.New("not found")

// splitConfigMapName splits "namespace/name"; empty is none.
func splitConfigMapName(configMap string) (ns, name string, err error) {
	if configMap == "" {
		return "", "", nil
	}
	ns, name, ok := strings.Cut(configMap, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("ConfigMap %q: want namespace/name", configMap)
	}
	return ns, name, nil
}

// ReadMigrationManifests reads the Ingresses and IngressClasses of the
// folder dir as standalone mode reads them (NewManifestSource), and the
// ConfigMap configMap ("namespace/name", a namespace of "default" for one
// written without) when it is not empty. The Problems are the files that
// could not be read; the error is for a folder that cannot be read at all,
// or a ConfigMap that is not there.
func ReadMigrationManifests(dir, configMap string) (MigrationInput, []Problem, error) {
	ns, name, err := splitConfigMapName(configMap)
	if err != nil {
		return MigrationInput{}, nil, err
	}
	src := NewManifestSource(dir, zap.NewNop())
	snap, problems, err := src.Load()
	if err != nil {
		return MigrationInput{}, nil, err
	}
	in := MigrationInput{Ingresses: snap.Ingresses, IngressClasses: snap.IngressClasses}
	if name == "" {
		return in, problems, nil
	}
	paths, _, err := src.walk(nil)
	if err != nil {
		return MigrationInput{}, nil, err
	}
	for _, rel := range paths {
		data, err := readManifest(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			continue // a Problem of Load already
		}
		if cm := manifestConfigMap(data, ns, name); cm != nil {
			in.ConfigMap = cm
			return in, problems, nil
		}
	}
	return MigrationInput{}, nil, fmt.Errorf("ConfigMap %s/%s in %s: %w", ns, name, dir, ErrConfigMapNotFound)
}

// manifestConfigMap returns the ConfigMap namespace/name of a manifest
// file, in a document of its own or an item of a List; nil when it has
// none. Standalone mode reads no ConfigMaps, so its decoding skips them.
func manifestConfigMap(data []byte, namespace, name string) *corev1.ConfigMap {
	docs, _ := splitDocuments(data)
	for _, doc := range docs {
		if cm := findConfigMap(doc.data, namespace, name, 0); cm != nil {
			return cm
		}
	}
	return nil
}

func findConfigMap(data []byte, namespace, name string, depth int) *corev1.ConfigMap {
	obj, _, err := decodeManifest(data)
	if obj == nil || (err != nil && !runtime.IsStrictDecodingError(err)) {
		return nil
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		if cm.Namespace == "" {
			cm.Namespace = metav1.NamespaceDefault
		}
		if cm.Namespace == namespace && cm.Name == name {
			return cm
		}
		return nil
	}
	if !meta.IsListType(obj) || depth >= maxListDepth {
		return nil
	}
	items, _ := meta.ExtractList(obj)
	for _, item := range items {
		var cm *corev1.ConfigMap
		switch item := item.(type) {
		case *runtime.Unknown:
			cm = findConfigMap(item.Raw, namespace, name, depth+1)
		case *corev1.ConfigMap: // a ConfigMapList's items
			if item.Namespace == namespace && item.Name == name {
				cm = item
			}
		}
		if cm != nil {
			return cm
		}
	}
	return nil
}

// ReadMigrationCluster reads every Ingress and IngressClass of the cluster
// (kubeconfig as Connect finds it: empty means in-cluster, else
// $KUBECONFIG), and the ConfigMap configMap ("namespace/name") when it is
// not empty.
func ReadMigrationCluster(ctx context.Context, kubeconfig, configMap string) (MigrationInput, error) {
	ns, name, err := splitConfigMapName(configMap)
	if err != nil {
		return MigrationInput{}, err
	}
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return MigrationInput{}, err
	}
	rc.UserAgent = "postern-migrate"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return MigrationInput{}, fmt.Errorf("kubernetes client: %w", err)
	}
	var in MigrationInput
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := client.NetworkingV1().Ingresses(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return MigrationInput{}, fmt.Errorf("list Ingresses on %s: %w", rc.Host, err)
		}
		for i := range list.Items {
			in.Ingresses = append(in.Ingresses, &list.Items[i])
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	classes, err := client.NetworkingV1().IngressClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return MigrationInput{}, fmt.Errorf("list IngressClasses on %s: %w", rc.Host, err)
	}
	for i := range classes.Items {
		in.IngressClasses = append(in.IngressClasses, &classes.Items[i])
	}
	if name != "" {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return MigrationInput{}, fmt.Errorf("ConfigMap %s/%s on %s: %w", ns, name, rc.Host, ErrConfigMapNotFound)
		}
		if err != nil {
			return MigrationInput{}, fmt.Errorf("get ConfigMap %s/%s on %s: %w", ns, name, rc.Host, err)
		}
		in.ConfigMap = cm
	}
	return in, nil
}
