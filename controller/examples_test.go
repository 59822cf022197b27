package controller

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamplesBuildCleanly: the quickstart's manifests (what `make run`
// serves standalone) decode and build without a Problem, so that a
// newcomer's first run shows none. (The walkthrough's need its cluster:
// it creates a Secret with kubectl.)
func TestExamplesBuildCleanly(t *testing.T) {
	for _, dir := range []string{"../examples/quickstart"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no manifests (%v)", dir, err)
		}
		var snap Snapshot
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := goldenSnapshot(data, false)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			snap = mergeSnapshots(snap, s)
		}
		tbl, problems, status := build(snap, Options{Now: goldenNow})
		if len(problems) > 0 {
			t.Errorf("%s: problems %v", dir, problems)
		}
		if len(tbl.VirtualHosts) == 0 {
			t.Errorf("%s: no virtual host built", dir)
		}
		for _, r := range status.HTTPRoutes {
			for _, p := range r.Parents {
				for _, c := range p.Conditions {
					if c.Status != "True" {
						t.Errorf("%s: HTTPRoute %s/%s: %s %s: %s", dir, r.Namespace, r.Name, c.Type, c.Reason, c.Message)
					}
				}
			}
		}
	}
}

// mergeSnapshots returns a with b's objects appended.
func mergeSnapshots(a, b Snapshot) Snapshot {
	a.Ingresses = append(a.Ingresses, b.Ingresses...)
	a.IngressClasses = append(a.IngressClasses, b.IngressClasses...)
	a.Services = append(a.Services, b.Services...)
	a.EndpointSlices = append(a.EndpointSlices, b.EndpointSlices...)
	a.Secrets = append(a.Secrets, b.Secrets...)
	a.ConfigMaps = append(a.ConfigMaps, b.ConfigMaps...)
	a.Namespaces = append(a.Namespaces, b.Namespaces...)
	a.GatewayClasses = append(a.GatewayClasses, b.GatewayClasses...)
	a.Gateways = append(a.Gateways, b.Gateways...)
	a.HTTPRoutes = append(a.HTTPRoutes, b.HTTPRoutes...)
	a.ReferenceGrants = append(a.ReferenceGrants, b.ReferenceGrants...)
	return a
}
