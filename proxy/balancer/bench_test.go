package balancer

import (
	"testing"
)

func BenchmarkPick(b *testing.B) {
	for _, name := range []string{PolicyRoundRobin, PolicyLeastRequest} {
		f := new(InFlight)
		bal, _ := New(name, f)
		eps := endpoints(16)
		addrs := make([]string, len(eps))
		for i, ep := range eps {
			addrs[i] = ep.Address
		}
		f.Retain(addrs)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bal.Pick(eps, 0) == nil {
					b.Fatal("nil")
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ep := bal.Pick(eps, 0)
					f.Acquire(ep.Address).Release()
				}
			})
		})
	}
}

func BenchmarkRegistryGet(b *testing.B) {
	r := NewRegistry(nil, nil)
	be := backend("ns/web:80", PolicyLeastRequest, 16)
	if err := r.Sync(table(be, backend("ns/other:80", "", 4))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Get(be)
	}
}
