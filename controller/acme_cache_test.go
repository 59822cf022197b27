package controller

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme/autocert"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestSecretCache(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewSecretCache(client, "ingress", zap.NewNop())
	if !c.Start(ctx, time.Minute) {
		t.Fatal("the cache did not sync")
	}
	if _, err := c.Get(ctx, "a.example.com"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatalf("Get of a missing key = %v, want ErrCacheMiss", err)
	}
	for _, v := range [][]byte{[]byte("first"), []byte("second")} {
		if err := c.Put(ctx, "a.example.com+rsa", v); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(ctx, "a.example.com+rsa")
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get after Put(%q) = %q, %v", v, got, err)
		}
	}
	s, err := client.CoreV1().Secrets("ingress").Get(ctx, secretName("a.example.com+rsa"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels[ACMECacheLabel] != "true" || string(s.Data["key"]) != "a.example.com+rsa" {
		t.Errorf("cache Secret = labels %v, key %q", s.Labels, s.Data["key"])
	}
	// A Secret whose stored key differs (a collision, or someone else's)
	// is a miss, not someone else's data.
	s.Data["key"] = []byte("other")
	if _, err := client.CoreV1().Secrets("ingress").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Get(ctx, "a.example.com+rsa")
		if errors.Is(err, autocert.ErrCacheMiss) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get of a Secret holding another key = %v, want ErrCacheMiss", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Delete(ctx, "a.example.com+rsa"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "a.example.com+rsa"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
}

// A cache whose Secrets cannot be listed (a missing RBAC rule) gives up
// waiting, and answers "not synced", never a miss that would make autocert
// order a certificate the cache may hold.
func TestSecretCacheForbidden(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "", errors.New("no rule"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewSecretCache(client, "ingress", zap.NewNop())
	if c.Start(ctx, 200*time.Millisecond) {
		t.Fatal("Start reported synced while listing is forbidden")
	}
	if c.Synced() {
		t.Error("Synced() = true while listing is forbidden")
	}
	if _, err := c.Get(ctx, "a.example.com"); !errors.Is(err, ErrCacheNotSynced) {
		t.Errorf("Get before sync = %v, want ErrCacheNotSynced", err)
	}
}
