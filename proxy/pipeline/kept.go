package pipeline

import "sync"

// keptMap holds what routes' policies keep across table swaps (rate limit
// zones, basic auth user stores), by key. A full compile, between begin
// and end, keeps the values its routes ask for and drops the rest; a
// patch only adds.
type keptMap[K comparable, V any] struct {
	mu   sync.Mutex
	m    map[K]V
	used map[K]bool // during a full compile
}

// keep returns the value of k, made by mk the first time.
func (km *keptMap[K, V]) keep(k K, mk func() V) V {
	km.mu.Lock()
	defer km.mu.Unlock()
	v, ok := km.m[k]
	if !ok {
		if km.m == nil {
			km.m = make(map[K]V)
		}
		v = mk()
		km.m[k] = v
	}
	if km.used != nil {
		km.used[k] = true
	}
	return v
}

// begin and end bracket a full compile.
func (km *keptMap[K, V]) begin() {
	km.mu.Lock()
	km.used = make(map[K]bool)
	km.mu.Unlock()
}

func (km *keptMap[K, V]) end() {
	km.mu.Lock()
	for k := range km.m {
		if !km.used[k] {
			delete(km.m, k)
		}
	}
	km.used = nil
	km.mu.Unlock()
}

// has reports whether k is kept.
func (km *keptMap[K, V]) has(k K) bool {
	km.mu.Lock()
	defer km.mu.Unlock()
	_, ok := km.m[k]
	return ok
}

// len returns how many values are kept.
func (km *keptMap[K, V]) len() int {
	km.mu.Lock()
	defer km.mu.Unlock()
	return len(km.m)
}
