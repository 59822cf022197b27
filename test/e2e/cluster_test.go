//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRoutingFollowsTheCluster: routing after apply, then every kind of
// update converges: a path changed, a host added, the Deployment behind a
// Service scaled up, down and to zero, the Service deleted, the Ingress
// deleted.
func TestRoutingFollowsTheCluster(t *testing.T) {
	ns := namespace(t, "routing")
	apply(t, ingressClass("routing", "e2e.postern.dev/routing", false)+
		echoDeployment(ns, "web", 1, "v1")+echoDeployment(ns, "api", 1, "v1")+
		ingress(ns, "shop", "routing", "shop.example.com", "/=web", "/api=api"))
	p := startPostern(t, "--ingress-class", "routing", "--controller-class", "e2e.postern.dev/routing", "--election-id", "routing")

	p.expectWithin(t, 60*time.Second, "shop.example.com", "/", 200, "web")
	p.expectWithin(t, 60*time.Second, "shop.example.com", "/api/orders", 200, "api")
	p.expect(t, "unknown.example.com", "/", 404, "")

	// Path changed: /api becomes /v2.
	apply(t, ingress(ns, "shop", "routing", "shop.example.com", "/=web", "/v2=api"))
	p.expect(t, "shop.example.com", "/v2/x", 200, "api")
	p.expect(t, "shop.example.com", "/api/orders", 200, "web")

	// Host added.
	apply(t, ingress(ns, "blog", "routing", "blog.example.com", "/=api"))
	p.expect(t, "blog.example.com", "/", 200, "api")

	// Scaled up: both Pods get traffic.
	kubectl(t, "scale", "-n", ns, "deployment/web", "--replicas", "2")
	eventually(t, 60*time.Second, func() error {
		seen := map[string]bool{}
		for range 10 {
			_, body := p.get("shop.example.com", "/")
			seen[strings.Fields(body + " x x")[1]] = true
		}
		if len(seen) != 2 {
			return fmt.Errorf("backends seen: %v", seen)
		}
		return nil
	})
	// Scaled down to one: every request goes to the Pod that stays.
	kubectl(t, "scale", "-n", ns, "deployment/web", "--replicas", "1")
	eventually(t, 60*time.Second, func() error {
		var ready []string
		for _, pi := range pods(t, ns, "web") {
			if pi.Ready && !pi.Deleting {
				ready = append(ready, pi.Name)
			}
		}
		if len(ready) != 1 {
			return fmt.Errorf("ready Pods of web: %v, want one", ready)
		}
		for range 6 {
			if _, body := p.get("shop.example.com", "/"); !fromBackend(body, ready) {
				return fmt.Errorf("still routed to %q, want %s only", firstLine(body), ready[0])
			}
		}
		return nil
	})
	// Scaled to zero: 503.
	kubectl(t, "scale", "-n", ns, "deployment/web", "--replicas", "0")
	p.expectWithin(t, 60*time.Second, "shop.example.com", "/", 503, "")

	// Service deleted: the path answers 503, it never falls through.
	kubectl(t, "delete", "-n", ns, "service", "api")
	p.expect(t, "shop.example.com", "/v2/x", 503, "")

	// Ingress deleted: 404.
	kubectl(t, "delete", "-n", ns, "ingress", "blog")
	p.expect(t, "blog.example.com", "/", 404, "")
}

// TestClassFiltering: an Ingress is served when its class is ours by name,
// by its IngressClass's controller, by the legacy annotation, or by being
// class-less while our IngressClass is the default; never otherwise.
func TestClassFiltering(t *testing.T) {
	ns := namespace(t, "classes")
	ctrl := "e2e.postern.dev/classes"
	apply(t, ingressClass("classes", ctrl, true)+
		ingressClass("classes-by-controller", ctrl, false)+
		ingressClass("someone-else", "example.com/other", false)+
		echoWorkload(ns, "svc", "classes", 1, "v1")+
		ingress(ns, "by-name", "classes", "by-name.example.com", "/=svc")+
		ingress(ns, "by-controller", "classes-by-controller", "by-controller.example.com", "/=svc")+
		ingress(ns, "foreign", "someone-else", "foreign.example.com", "/=svc")+
		ingress(ns, "default", "", "default.example.com", "/=svc")+
		strings.Replace(ingress(ns, "legacy", "", "legacy.example.com", "/=svc"),
			"metadata: {name: legacy, namespace: classes}",
			"metadata: {name: legacy, namespace: classes, annotations: {kubernetes.io/ingress.class: classes}}", 1))
	t.Cleanup(func() {
		_, _ = kubectlErr("delete", "ingressclass", "classes", "classes-by-controller", "someone-else")
	})
	p := startPostern(t, "--ingress-class", "classes", "--controller-class", ctrl, "--election-id", "classes")
	for _, h := range []string{"by-name", "by-controller", "default", "legacy"} {
		p.expectWithin(t, 60*time.Second, h+".example.com", "/", 200, "classes")
	}
	p.expect(t, "foreign.example.com", "/", 404, "")
}

// TestWatchNamespace: with --watch-namespace, Ingresses elsewhere are not
// seen at all.
func TestWatchNamespace(t *testing.T) {
	in := namespace(t, "watched")
	out := namespace(t, "unwatched")
	apply(t, echoWorkload(in, "svc", "watched", 1, "v1")+echoWorkload(out, "svc", "unwatched", 1, "v1")+
		ingress(in, "in", "watchns", "in.example.com", "/=svc")+
		ingress(out, "out", "watchns", "out.example.com", "/=svc"))
	p := startPostern(t, "--ingress-class", "watchns", "--election-id", "watchns", "--watch-namespace", in)
	p.expectWithin(t, 60*time.Second, "in.example.com", "/", 200, "watched")
	p.expect(t, "out.example.com", "/", 404, "")
}

// ingressStatus returns the addresses in an Ingress's status.
func ingressStatus(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := kubectlErr("get", "ingress", "-n", ns, name, "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
	if err != nil {
		return "error: " + out
	}
	return strings.TrimSpace(out)
}

type eventList struct {
	Items []struct {
		Reason    string `json:"reason"`
		Note      string `json:"note"`
		Type      string `json:"type"`
		Regarding struct {
			Kind, Name string
		} `json:"regarding"`
		Series *struct {
			Count int `json:"count"`
		} `json:"series"`
	} `json:"items"`
}

// TestStatusAndEvents: the leader writes status on the Ingresses it serves
// and clears it on one it stops serving; a broken Ingress gets an Event
// while the others keep serving.
func TestStatusAndEvents(t *testing.T) {
	ns := namespace(t, "status")
	apply(t, echoWorkload(ns, "svc", "status", 1, "v1")+
		ingress(ns, "good", "status", "good.example.com", "/=svc")+
		ingress(ns, "broken", "status", "broken.example.com", "/=missing"))
	p := startPostern(t, "--ingress-class", "status", "--election-id", "status", "--publish-status-address", "192.0.2.241")

	p.expectWithin(t, 60*time.Second, "good.example.com", "/", 200, "status")
	p.expect(t, "broken.example.com", "/", 503, "")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, ns, "good"); got != "192.0.2.241" {
			return fmt.Errorf("status of good = %q", got)
		}
		return nil
	})
	var events eventList
	eventually(t, 40*time.Second, func() error {
		out, err := kubectlErr("get", "events.events.k8s.io", "-n", ns, "-o", "json")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		events = eventList{}
		if err := json.Unmarshal([]byte(out), &events); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Regarding.Kind == "Ingress" && e.Regarding.Name == "broken" && e.Reason == "ServiceNotFound" && e.Type == "Warning" {
				return nil
			}
		}
		return fmt.Errorf("no ServiceNotFound event on Ingress broken: %+v", events.Items)
	})
	// Other changes do not repeat the Event (no Event storm).
	for i := range 5 {
		apply(t, ingress(ns, fmt.Sprintf("churn-%d", i), "status", fmt.Sprintf("churn%d.example.com", i), "/=svc"))
	}
	p.expect(t, "churn4.example.com", "/", 200, "status")
	out := kubectl(t, "get", "events.events.k8s.io", "-n", ns, "-o", "json")
	events = eventList{}
	if err := json.Unmarshal([]byte(out), &events); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events.Items {
		if e.Regarding.Name == "broken" {
			n++
			if e.Series != nil {
				t.Errorf("the Event on broken became a series of %d: posted again on unrelated changes", e.Series.Count)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d Events on Ingress broken, want 1", n)
	}

	// Moved to another class: we stop serving it and clear our status.
	apply(t, ingress(ns, "good", "someone-else", "good.example.com", "/=svc"))
	p.expect(t, "good.example.com", "/", 404, "")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, ns, "good"); got != "" {
			return fmt.Errorf("status of good = %q, want cleared", got)
		}
		return nil
	})
}

// TestLeaderFailover: two replicas serve; only the leader writes status;
// when it is killed the other takes over the status writes.
func TestLeaderFailover(t *testing.T) {
	ns := namespace(t, "failover")
	apply(t, echoWorkload(ns, "svc", "failover", 1, "v1")+ingress(ns, "first", "failover", "first.example.com", "/=svc"))
	args := []string{"--ingress-class", "failover", "--election-id", "failover", "--publish-status-address", "192.0.2.251"}
	a := startPostern(t, args...)
	b := startPostern(t, args...)
	a.expectWithin(t, 60*time.Second, "first.example.com", "/", 200, "failover")
	b.expect(t, "first.example.com", "/", 200, "failover")
	eventually(t, 40*time.Second, func() error {
		if got := ingressStatus(t, ns, "first"); got != "192.0.2.251" {
			return fmt.Errorf("status = %q", got)
		}
		return nil
	})
	leader, other := oneLeader(t, a, b)
	leader.Kill() // no graceful release: the other must wait out the lease
	apply(t, ingress(ns, "second", "failover", "second.example.com", "/=svc"))
	other.expect(t, "second.example.com", "/", 200, "failover")
	eventually(t, 60*time.Second, func() error {
		if got := ingressStatus(t, ns, "second"); got != "192.0.2.251" {
			return fmt.Errorf("status of second = %q, want it written by the new leader", got)
		}
		return nil
	})
	if !strings.Contains(other.Out.String(), "became leader") {
		t.Errorf("the surviving replica never logged becoming leader")
	}
}

// TestAPIServerOutage: the API server stopped for 10 s and started again;
// requests keep succeeding throughout, and changes after the restart are
// picked up.
func TestAPIServerOutage(t *testing.T) {
	ns := namespace(t, "outage")
	// A backend of the test's own with a hand-written EndpointSlice, not a
	// Deployment: the Nodes cannot renew their Leases while the API server is
	// away, so once it is back the node lifecycle controller may rightly mark
	// them NotReady, and their Pods with them, until the Leases are seen again.
	// That is the cluster at work, not what this test is about: Postern going on
	// serving what it last knew.
	startEcho(t, "outage", "192.0.2.55:9000")
	apply(t, service(ns, "svc", "192.0.2.55")+ingress(ns, "app", "outage", "app.example.com", "/=svc"))
	p := startPostern(t, "--ingress-class", "outage", "--election-id", "outage")
	p.expect(t, "app.example.com", "/", 200, "outage")

	// Two workers, one request each per 20 ms: the outage can last up to
	// two minutes with the reconnect, so keep the request count modest.
	l := startLoad(t, p, loadOptions{host: "app.example.com", backends: []string{"outage"}, workers: 2, interval: 20 * time.Millisecond})
	stopAPIServer(t)
	time.Sleep(10 * time.Second)
	startAPIServer(t)
	restarted := time.Now()
	apply(t, ingress(ns, "after", "outage", "after.example.com", "/=svc"))
	// client-go's reflectors retry a lost API server with an exponential
	// back-off capped at 30 s plus up to 100% jitter; every controller built
	// on shared informers reconnects on that schedule, so allow it.
	p.expectWithin(t, 90*time.Second, "after.example.com", "/", 200, "outage")
	reconnected := time.Since(restarted).Round(time.Millisecond)
	t.Logf("change after the restart served %s after the API server came back", reconnected)
	r := l.Stop()
	report(t, "api server outage", r, fmt.Sprintf("API server stopped 10 s; a change after the restart served %s after it came back", reconnected))
	if r.sent < 100 || r.failed != 0 {
		t.Errorf("during the outage %d of %d requests failed (want 0 of at least 100):%s", r.failed, r.sent, r.failuresText(10))
	}
	if !p.Exited() {
		if code, _ := httpGet(p.MetricsAddr, "", "/readyz"); code != 200 {
			t.Errorf("/readyz after the outage = %d", code)
		}
	}

	// The rest of the suite needs the cluster whole again: the controller
	// manager reconnected (a Deployment rolls out) and the Nodes Ready.
	apply(t, echoDeployment(ns, "probe", 1, "v1"))
	eventually(t, 3*time.Minute, func() error {
		out, err := kubectlErr("get", "deployment", "-n", ns, "probe", "-o", "jsonpath={.status.readyReplicas}")
		if err != nil || strings.TrimSpace(out) != "1" {
			return fmt.Errorf("the controller manager has not rolled out a Deployment since the outage (ready %q, %w)", out, err)
		}
		return nil
	})
	if err := cluster.WaitNodesReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("the controllers and Nodes worked again %s after the API server came back (controller manager restarted %d times, scheduler %d)",
		time.Since(restarted).Round(time.Second), cluster.ControllerManager.Restarts(), cluster.Scheduler.Restarts())
}

// oneLeader waits until exactly one of a and b has logged becoming leader,
// and returns it and the other replica.
func oneLeader(t *testing.T, a, b *Postern) (leader, other *Postern) {
	t.Helper()
	eventually(t, 40*time.Second, func() error {
		la, lb := strings.Contains(a.Out.String(), "became leader"), strings.Contains(b.Out.String(), "became leader")
		switch {
		case la && !lb:
			leader, other = a, b
		case lb && !la:
			leader, other = b, a
		default:
			return fmt.Errorf("became leader: a=%v b=%v, want exactly one", la, lb)
		}
		return nil
	})
	return leader, other
}
