package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme/autocert"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// ACME cache Secrets: one per autocert cache entry, in the controller's own
// namespace, so every replica serves the same certificates and a restart
// orders nothing new.
const (
	// ACMECacheLabel marks the Secrets of the ACME cache.
	ACMECacheLabel = "postern.dev/acme-cache"
	// ACMECachePrefix starts the name of every ACME cache Secret.
	ACMECachePrefix = "postern-acme-"
	// acmeKeyField and acmeDataField are the Secret's data keys: the
	// autocert cache key (a host, "host+rsa", "acme_account+key", a token)
	// and its value.
	acmeKeyField  = "key"
	acmeDataField = "data"
)

// SecretCache is an autocert.Cache kept in Kubernetes Secrets. Reads come
// from an informer's store, so a flood of requests for unknown ACME
// challenge tokens costs the API server nothing; writes go to the API.
type SecretCache struct {
	client    kubernetes.Interface
	namespace string
	factory   informers.SharedInformerFactory
	lister    corelisters.SecretNamespaceLister
	synced    cache.InformerSynced
	log       *zap.Logger
}

var _ autocert.Cache = (*SecretCache)(nil)

// NewSecretCache returns a cache in namespace; Start must run before use.
func NewSecretCache(client kubernetes.Interface, namespace string, logger *zap.Logger) *SecretCache {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ACMECacheLabel + "=true" }))
	inf := f.Core().V1().Secrets()
	return &SecretCache{
		client:    client,
		namespace: namespace,
		factory:   f,
		lister:    inf.Lister().Secrets(namespace),
		synced:    inf.Informer().HasSynced,
		log:       logger,
	}
}

// ErrCacheNotSynced is what Get returns until the cache's informer has
// listed the cache Secrets once: not a miss, so that nothing is ordered
// for a certificate the cache may well hold.
var ErrCacheNotSynced = errors.New("acme cache: secrets not listed yet")

// Start starts the informer and waits until it has synced, ctx is done or
// wait has passed, whichever comes first; it reports whether the cache is
// synced. An unsynced cache keeps trying in the background (a missing RBAC
// rule can be granted later): Get answers ErrCacheNotSynced meanwhile and
// Synced reports false, so that callers neither serve nor order.
func (c *SecretCache) Start(ctx context.Context, wait time.Duration) bool {
	c.factory.Start(ctx.Done())
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return cache.WaitForCacheSync(wctx.Done(), c.synced)
}

// Synced reports whether the cache has listed its Secrets once.
func (c *SecretCache) Synced() bool { return c.synced() }

// secretName is the Secret holding key: a hash, since keys may hold
// characters (the "+" of "host+rsa") a Secret name may not.
func secretName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return ACMECachePrefix + hex.EncodeToString(sum[:10])
}

// Get returns the value stored under key, or autocert.ErrCacheMiss.
func (c *SecretCache) Get(_ context.Context, key string) ([]byte, error) {
	if !c.synced() {
		return nil, ErrCacheNotSynced
	}
	s, err := c.lister.Get(secretName(key))
	if apierrors.IsNotFound(err) {
		return nil, autocert.ErrCacheMiss
	}
	if err != nil {
		return nil, fmt.Errorf("acme cache get %s: %w", key, err)
	}
	if string(s.Data[acmeKeyField]) != key {
		return nil, autocert.ErrCacheMiss // a hash collision, or a stranger's Secret
	}
	return s.Data[acmeDataField], nil
}

// Put stores data under key, creating or replacing its Secret.
func (c *SecretCache) Put(ctx context.Context, key string, data []byte) error {
	secrets := c.client.CoreV1().Secrets(c.namespace)
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      secretName(key),
			Namespace: c.namespace,
			Labels:    map[string]string{ACMECacheLabel: "true", "app.kubernetes.io/managed-by": "postern"},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{acmeKeyField: []byte(key), acmeDataField: data},
	}
	_, err := secrets.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := secrets.Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Labels, cur.Data = want.Labels, want.Data
			_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		c.log.Warn("acme cache write failed", zap.String("key", key), zap.String("namespace", c.namespace), zap.Error(err))
		return fmt.Errorf("acme cache put %s: %w", key, err)
	}
	c.waitVisible(ctx, key, data)
	return nil
}

// waitVisible waits briefly until the informer has seen a write, so that
// a Get right after Put (autocert does that) finds it.
func (c *SecretCache) waitVisible(ctx context.Context, key string, data []byte) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if got, err := c.Get(ctx, key); err == nil && bytes.Equal(got, data) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Delete removes the value stored under key; a missing one is no error.
func (c *SecretCache) Delete(ctx context.Context, key string) error {
	err := c.client.CoreV1().Secrets(c.namespace).Delete(ctx, secretName(key), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("acme cache delete %s: %w", key, err)
	}
	return nil
}
