//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests here run their backends as a user does: a Deployment of the echo image
// and a Service with a selector. The controller manager makes the ReplicaSets and
// Pods and writes the EndpointSlices, the scheduler places the Pods on the two Nodes,
// and the node agents run them, each in a network namespace of its own.

// echoDeployment is a Deployment of the echo backend, each Pod named after itself
// (the response's "backend:" line), ready when it answers on :9000; rolling updates
// surge by one and never go below the replicas. The preStop sleep is what
// ingress-nginx's documentation has users write too: the Pod keeps serving for two
// seconds after it is marked terminating, while every proxy takes it out.
func echoDeployment(ns, name string, replicas int, version string) string {
	return echoWorkload(ns, name, name, replicas, version)
}

// echoWorkload is echoDeployment with the Service named svc and the Deployment (and
// its Pods' label app, and their names' start) app.
func echoWorkload(ns, svc, name string, replicas int, version string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: %[3]d
  selector: {matchLabels: {app: %[2]s}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec:
      terminationGracePeriodSeconds: 10
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: %[2]s}}}
      containers:
      - name: echo
        image: %[4]s
        args: ["--name", "$(POD_NAME)", "--listen", ":9000"]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: VERSION, value: %[5]q}
        ports: [{name: http, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
        livenessProbe: {tcpSocket: {port: http}, periodSeconds: 2}
        lifecycle: {preStop: {sleep: {seconds: 2}}}
---
apiVersion: v1
kind: Service
metadata: {name: %[6]s, namespace: %[1]s}
spec:
  selector: {app: %[2]s}
  ports: [{name: http, port: 80, targetPort: http}]
---
`, ns, name, replicas, echoImage, version, svc)
}

// waitRollout waits until the Deployments in ns have all their Pods Ready.
func waitRollout(t testing.TB, ns string, deployments ...string) {
	t.Helper()
	for _, d := range deployments {
		kubectl(t, "rollout", "status", "-n", ns, "deployment/"+d, "--timeout", "120s")
	}
}

// podInfo is what the tests read of a Pod.
type podInfo struct {
	Name, UID, Node, IP string
	Ready, Deleting     bool
	Restarts            int
}

// pods lists the Pods of app in ns.
func pods(t testing.TB, ns, app string) []podInfo {
	t.Helper()
	out := kubectl(t, "get", "pods", "-n", ns, "-l", "app="+app, "-o", "json")
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				UID               string  `json:"uid"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status struct {
				PodIP      string `json:"podIP"`
				Conditions []struct {
					Type, Status string
				} `json:"conditions"`
				ContainerStatuses []struct {
					RestartCount int `json:"restartCount"`
				} `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var ps []podInfo
	for _, it := range list.Items {
		p := podInfo{Name: it.Metadata.Name, UID: it.Metadata.UID, Node: it.Spec.NodeName, IP: it.Status.PodIP,
			Deleting: it.Metadata.DeletionTimestamp != nil}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				p.Ready = true
			}
		}
		for _, c := range it.Status.ContainerStatuses {
			p.Restarts += c.RestartCount
		}
		ps = append(ps, p)
	}
	return ps
}

// waitServing waits until n Pods of app are Ready (none being deleted) and Postern
// routes host to exactly their addresses; it returns them.
func waitServing(t *testing.T, p *Postern, ns, app, host string, n int, timeout time.Duration) []podInfo {
	t.Helper()
	var ready []podInfo
	eventually(t, timeout, func() error {
		ready = ready[:0]
		var want []string
		for _, pi := range pods(t, ns, app) {
			if pi.Deleting {
				return fmt.Errorf("pod %s is still terminating", pi.Name)
			}
			if pi.Ready {
				ready = append(ready, pi)
				want = append(want, pi.IP+":9000")
			}
		}
		if len(ready) != n {
			return fmt.Errorf("%d Pods of %s ready, want %d", len(ready), app, n)
		}
		slices.Sort(want)
		if got := routedEndpoints(t, p, host); !slices.Equal(got, want) {
			return fmt.Errorf("Postern routes %s to %v, want %v", host, got, want)
		}
		return nil
	})
	return ready
}

func names(ps []podInfo) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// anyBackend accepts a response from any Pod of the Deployment app (their names
// start with it).
func anyBackend(app string) []string { return []string{app + "-*"} }

// TestWorkloadScale: a Deployment scaled 2 -> 6 -> 1 under load: every Pod added is
// routed to once Ready, every Pod removed is taken out while it drains; no request
// fails.
func TestWorkloadScale(t *testing.T) {
	ns := namespace(t, "wl-scale")
	host := "scale.example.com"
	apply(t, echoDeployment(ns, "web", 2, "v1")+ingress(ns, "app", ns, host, "/=web"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	waitServing(t, p, ns, "web", host, 2, 60*time.Second)

	l := startLoad(t, p, loadOptions{host: host, backends: anyBackend("web")})
	kubectl(t, "scale", "-n", ns, "deployment/web", "--replicas", "6")
	six := waitServing(t, p, ns, "web", host, 6, 60*time.Second)
	nodes := map[string]int{}
	for _, pi := range six {
		nodes[pi.Node]++
	}
	kubectl(t, "scale", "-n", ns, "deployment/web", "--replicas", "1")
	waitServing(t, p, ns, "web", host, 1, 60*time.Second)
	time.Sleep(time.Second)
	r := l.Stop()
	report(t, "scale 2 -> 6 -> 1", r, fmt.Sprintf("Deployment scaled; 6 Pods on Nodes %v", nodes))
	if r.failed != 0 || r.sent < 300 {
		t.Errorf("%d of %d requests failed while scaling (want 0 of at least 300):%s", r.failed, r.sent, r.failuresText(10))
	}
	if len(nodes) != 2 {
		t.Errorf("6 Pods placed on Nodes %v; want both Nodes used", nodes)
	}
}

// TestWorkloadRollingUpdate: a new version of the backend rolled out (maxSurge 1,
// maxUnavailable 0) under load: no request fails, and afterwards only new Pods answer.
func TestWorkloadRollingUpdate(t *testing.T) {
	ns := namespace(t, "wl-roll")
	host := "roll.example.com"
	apply(t, echoDeployment(ns, "web", 3, "v1")+ingress(ns, "app", ns, host, "/=web"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	old := waitServing(t, p, ns, "web", host, 3, 60*time.Second)

	l := startLoad(t, p, loadOptions{host: host, backends: anyBackend("web")})
	time.Sleep(500 * time.Millisecond)
	apply(t, echoDeployment(ns, "web", 3, "v2"))
	kubectl(t, "rollout", "status", "-n", ns, "deployment/web", "--timeout", "120s")
	fresh := waitServing(t, p, ns, "web", host, 3, 60*time.Second)
	time.Sleep(time.Second)
	r := l.Stop()
	report(t, "rolling update (Deployment)", r, "3 Pods replaced by the Deployment controller, maxSurge 1, maxUnavailable 0; retries on")
	if r.failed != 0 || r.sent < 300 {
		t.Errorf("%d of %d requests failed during the rollout (want 0 of at least 300):%s", r.failed, r.sent, r.failuresText(10))
	}
	for _, f := range fresh {
		if slices.Contains(names(old), f.Name) {
			t.Errorf("pod %s of the old version still serves after the rollout", f.Name)
		}
	}
	for range 6 {
		if code, body := p.get(host, "/"); code != 200 || !fromBackend(body, names(fresh)) {
			t.Errorf("after the rollout: %d %q, want 200 from one of %v", code, firstLine(body), names(fresh))
		}
	}
}

// podPids are the processes of a Pod: those in its network namespace, which the node
// agent names <prefix>-<node>-<uid>.
func podPids(t *testing.T, pi podInfo) []int {
	t.Helper()
	netns := fmt.Sprintf("%s-%s-%s", os.Getenv("POSTERN_E2E_NETNS"), pi.Node, pi.UID)
	out, err := exec.CommandContext(t.Context(), "ip", "netns", "pids", netns).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", netns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no process in %s", netns)
	}
	return pids
}

// TestWorkloadPodKilled: the process of one of three Pods is SIGKILLed under load. At
// most the requests in flight to it fail; the rest go to the others (a refused
// connection is retried) until the node agent has restarted the container
// (restartCount 1) and it is Ready again.
func TestWorkloadPodKilled(t *testing.T) {
	ns := namespace(t, "wl-kill")
	host := "podkill.example.com"
	apply(t, echoDeployment(ns, "web", 3, "v1")+ingress(ns, "app", ns, host, "/=web"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	ready := waitServing(t, p, ns, "web", host, 3, 60*time.Second)
	victim := ready[0]

	l := startLoad(t, p, loadOptions{host: host, backends: anyBackend("web")})
	time.Sleep(time.Second)
	kill := time.Now()
	for _, pid := range podPids(t, victim) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killed := time.Now()
	eventually(t, 60*time.Second, func() error {
		for _, pi := range pods(t, ns, "web") {
			if pi.Name == victim.Name {
				if pi.Restarts != 1 || !pi.Ready {
					return fmt.Errorf("pod %s: restarts %d, ready %v; want restarted once and ready", pi.Name, pi.Restarts, pi.Ready)
				}
				return nil
			}
		}
		return fmt.Errorf("pod %s is gone; a killed container is restarted in its Pod", victim.Name)
	})
	waitServing(t, p, ns, "web", host, 3, 30*time.Second)
	time.Sleep(time.Second)
	r := l.Stop()
	inFlight, failedInFlight, after := 0, 0, 0
	for _, o := range l.outcomesFrom(time.Time{}, killed) {
		if o.start.Add(o.took).After(kill) {
			inFlight++
		}
	}
	for _, f := range r.failures {
		if f.start.Before(killed) {
			failedInFlight++
		} else {
			after++
		}
	}
	report(t, "pod process killed", r, fmt.Sprintf("%d requests in flight at the kill, %d of them failed; %d failed after it; the container restarted in place", inFlight, failedInFlight, after))
	if failedInFlight > inFlight || after != 0 {
		t.Errorf("%d failed after the kill (want 0), %d of %d in flight:%s", after, failedInFlight, inFlight, r.failuresText(10))
	}
}

// TestWorkloadNodeLost: the agent of node-2 dies with every process of its Pods (a
// machine that lost power) under load. Requests to its Pods are refused and retried
// on the others; the node lifecycle controller marks the Node NotReady when its Lease
// runs out, its Pods are evicted after their toleration, and the Deployment replaces
// them on node-1; traffic follows. Then the Node comes back.
func TestWorkloadNodeLost(t *testing.T) {
	ns := namespace(t, "wl-node")
	host := "node.example.com"
	apply(t, echoDeployment(ns, "web", 4, "v1")+ingress(ns, "app", ns, host, "/=web"))
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)
	before := waitServing(t, p, ns, "web", host, 4, 60*time.Second)
	lost := cluster.Nodes()[1]
	onLost := 0
	for _, pi := range before {
		if pi.Node == lost.Name {
			onLost++
		}
	}
	if onLost == 0 {
		t.Fatalf("no Pod on %s: %v", lost.Name, before)
	}
	t.Cleanup(func() {
		if lost.Proc.Exited() {
			_ = lost.Start()
		}
		_ = cluster.WaitNodesReady(time.Minute)
	})

	l := startLoad(t, p, loadOptions{host: host, backends: anyBackend("web")})
	time.Sleep(time.Second)
	killed := time.Now()
	lost.Kill()
	var notReadyAfter time.Duration
	eventually(t, 60*time.Second, func() error {
		out := kubectl(t, "get", "node", lost.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if strings.TrimSpace(out) == "True" {
			return fmt.Errorf("node %s still Ready", lost.Name)
		}
		notReadyAfter = time.Since(killed)
		return nil
	})
	// Evicted Pods stay Terminating (no agent confirms their end), so wait for four
	// Ready Pods on node-1 and for Postern to route to them only.
	var after []podInfo
	eventually(t, 90*time.Second, func() error {
		after = after[:0]
		var want []string
		for _, pi := range pods(t, ns, "web") {
			if pi.Ready && !pi.Deleting && pi.Node != lost.Name {
				after = append(after, pi)
				want = append(want, pi.IP+":9000")
			}
		}
		if len(after) != 4 {
			return fmt.Errorf("%d Ready Pods off %s, want 4", len(after), lost.Name)
		}
		slices.Sort(want)
		if got := routedEndpoints(t, p, host); !slices.Equal(got, want) {
			return fmt.Errorf("Postern routes %s to %v, want %v", host, got, want)
		}
		return nil
	})
	movedAfter := time.Since(killed)
	time.Sleep(time.Second)
	r := l.Stop()
	report(t, "node lost", r, fmt.Sprintf("%d of 4 Pods on the lost Node; NotReady after %s, all 4 Pods on the other Node and routed after %s",
		onLost, notReadyAfter.Round(time.Second), movedAfter.Round(time.Second)))
	// A request to a dead Pod is refused and retried elsewhere; one that was in
	// flight to it at the moment of the loss may fail.
	if r.failed > 8 {
		t.Errorf("%d of %d requests failed (want at most the 8 in flight):%s", r.failed, r.sent, r.failuresText(10))
	}
	for range 8 {
		if code, body := p.get(host, "/"); code != 200 || !fromBackend(body, names(after)) {
			t.Errorf("after the move: %d %q, want 200 from one of %v", code, firstLine(body), names(after))
		}
	}

	// The Node comes back: its agent finishes the evicted Pods for good.
	if err := lost.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitNodesReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		for _, pi := range pods(t, ns, "web") {
			if pi.Deleting {
				return fmt.Errorf("pod %s still terminating after its Node came back", pi.Name)
			}
		}
		return nil
	})
}

// TestChartPods: Postern installed by `helm install` of the chart, its two replicas
// run by the node agents as the real binary with in-cluster credentials (the projected
// service-account token); one is elected leader, and both serve an Ingress to a
// Deployment's Pods. `kubectl logs` reads the leader's log through the kubelet port.
func TestChartPods(t *testing.T) {
	h, dir := chartHelm(t)
	rel := namespace(t, "chart-pods")
	app := namespace(t, "chart-pods-app")
	host := "chart-pods.example.com"
	installChart(t, h, dir, "edge", rel, "--set",
		"ingressClass.name=chart-pods,ingressClass.controller=e2e.postern.dev/chart-pods,electionID=chart-pods-leader")
	apply(t, echoDeployment(app, "web", 2, "v1")+ingress(app, "app", "chart-pods", host, "/=web"))
	kubectl(t, "rollout", "status", "-n", rel, "deployment", "--timeout", "120s")
	kubectl(t, "rollout", "status", "-n", app, "deployment/web", "--timeout", "120s")

	var edge []podInfo
	out := kubectl(t, "get", "pods", "-n", rel, "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{\"\\n\"}{end}")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			edge = append(edge, podInfo{Name: f[0], IP: f[1], Node: f[2]})
		}
	}
	if len(edge) != 2 {
		t.Fatalf("chart Pods: %q, want 2 running", out)
	}
	holder := ""
	eventually(t, 60*time.Second, func() error {
		holder = strings.TrimSpace(kubectl(t, "get", "lease", "-n", rel, "chart-pods-leader", "-o", "jsonpath={.spec.holderIdentity}"))
		if holder == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	leader := ""
	for _, e := range edge {
		if strings.HasPrefix(holder, e.Name+"_") || holder == e.Name {
			leader = e.Name
		}
	}
	if leader == "" {
		t.Fatalf("leader %q is none of the chart's Pods %v", holder, names(edge))
	}
	logs := kubectl(t, "logs", "-n", rel, leader)
	if !strings.Contains(logs, "became leader") {
		t.Errorf("kubectl logs %s has no \"became leader\":\n%s", leader, lastLines(logs, 10))
	}
	backends := anyBackend("web")
	for _, e := range edge {
		addr := e.IP + ":8080" // the chart's containerPorts.http
		eventually(t, 30*time.Second, func() error {
			code, body := httpGet(addr, host, "/")
			if code != http.StatusOK || !fromBackend(body, backends) {
				return fmt.Errorf("through Pod %s (%s): %d %q", e.Name, addr, code, firstLine(body))
			}
			return nil
		})
	}
	t.Logf("chart Pods %v (leader %s) on Nodes %s, %s serve %s", names(edge), leader, edge[0].Node, edge[1].Node, host)
}
