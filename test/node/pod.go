package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// podWorker runs one Pod from the moment it is bound to this Node until it is gone:
// its sandbox (network namespace), volumes, init containers in order, containers
// (restarted by restartPolicy), its status, and graceful termination when it is
// deleted. It is level-triggered: each change of the Pod, of a container or a probe,
// and a tick each second, makes it compare what runs with what should.
type podWorker struct {
	a   *agent
	uid types.UID
	dir string

	mu       sync.Mutex
	pod      *corev1.Pod
	gone     bool // the Pod object was deleted
	quitting bool // the agent is stopping
	wake     chan struct{}

	// Owned by run's goroutine.
	sb          *sandbox
	vols        map[string]string
	volsAt      time.Time
	tokens      map[string]token
	started     time.Time
	inits       []*container
	containers  []*container
	initialized bool
	lastMount   string
	lastConfig  string
}

func newPodWorker(a *agent, p *corev1.Pod) *podWorker {
	w := &podWorker{a: a, uid: p.UID, pod: p, wake: make(chan struct{}, 1), tokens: map[string]token{},
		dir: filepath.Join(a.c.stateDir, "pods", fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID))}
	for _, c := range p.Spec.InitContainers {
		w.inits = append(w.inits, &container{w: w, spec: c, init: true})
	}
	for _, c := range p.Spec.Containers {
		w.containers = append(w.containers, &container{w: w, spec: c})
	}
	return w
}

func (w *podWorker) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(p *corev1.Pod) {
	w.mu.Lock()
	w.pod = p
	w.mu.Unlock()
	w.notify()
}

func (w *podWorker) removed() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.notify()
}

func (w *podWorker) shutdown() {
	w.mu.Lock()
	w.quitting = true
	w.mu.Unlock()
	w.notify()
}

func (w *podWorker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) podIP() string {
	if w.sb == nil {
		return ""
	}
	return w.sb.ip.String()
}

func (w *podWorker) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		w.mu.Lock()
		pod, gone, quitting := w.pod, w.gone, w.quitting
		w.mu.Unlock()
		switch {
		case quitting:
			w.killAll(pod, gracePeriod(pod), "the node agent is stopping")
			w.teardown()
			return
		case gone:
			// Deleted without us (a force deletion): stop at once.
			w.killAll(pod, 2*time.Second, "the Pod was deleted")
			w.teardown()
			return
		case pod.DeletionTimestamp != nil:
			w.terminate(pod)
			return
		}
		w.sync(pod)
		select {
		case <-w.wake:
		case <-tick.C:
		}
	}
}

// gracePeriod is how long the Pod's containers get between SIGTERM and SIGKILL: the
// deletion's, or the Pod's terminationGracePeriodSeconds (30 s by default).
func gracePeriod(p *corev1.Pod) time.Duration {
	if p.DeletionGracePeriodSeconds != nil {
		return time.Duration(*p.DeletionGracePeriodSeconds) * time.Second
	}
	if p.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// terminate is a graceful deletion: every container is stopped (preStop, SIGTERM,
// SIGKILL after the grace period), the sandbox goes, the final status is written,
// and the Pod object is deleted for good (grace 0, this Pod's UID only).
func (w *podWorker) terminate(pod *corev1.Pod) {
	w.killAll(pod, gracePeriod(pod), "the Pod is being deleted")
	w.teardown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.writeStatus(ctx, w.current())
	uid := pod.UID
	err := w.a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To(int64(0)), Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.a.logf("delete Pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// killAll stops every running container at once, each within grace.
func (w *podWorker) killAll(pod *corev1.Pod, grace time.Duration, why string) {
	var wg sync.WaitGroup
	for _, c := range append(append([]*container{}, w.inits...), w.containers...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(pod, grace, why)
		}()
	}
	wg.Wait()
}

func (w *podWorker) teardown() {
	if w.sb != nil {
		w.a.net.remove(w.sb)
		w.sb = nil
	}
	_ = os.RemoveAll(filepath.Join(w.dir, "volumes"))
}

// restartUnhealthy stops a container whose liveness or startup probe failed; sync
// then starts it again as restartPolicy says.
func (w *podWorker) restartUnhealthy(c *container) {
	pod := w.current()
	grace := gracePeriod(pod)
	if p := c.spec.LivenessProbe; p != nil && p.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	c.stop(pod, grace, "failed liveness probe, will be restarted")
	w.notify()
}

// sync moves the Pod one step towards running: sandbox, volumes, init containers,
// containers; then writes its status if it changed.
func (w *podWorker) sync(pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer w.writeStatus(ctx, pod)
	if w.done(pod) {
		if w.sb != nil {
			w.teardown()
		}
		return
	}
	if w.started.IsZero() {
		w.started = time.Now()
	}
	if w.sb == nil {
		if err := w.makeSandbox(pod); err != nil {
			w.a.events.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			return
		}
	}
	// Volumes are written at the start and refreshed every few seconds (a changed
	// Secret reaches the files as it does with the kubelet, if sooner).
	if w.vols == nil || time.Since(w.volsAt) > 5*time.Second {
		vols, err := w.volumes(ctx, pod)
		if err != nil {
			var me mountError
			if errors.As(err, &me) && me.Error() != w.lastMount {
				w.lastMount = me.Error()
				w.a.events.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "%s", me.Error())
			}
			if w.vols == nil {
				for _, c := range w.containers {
					c.setWaiting("ContainerCreating", "")
				}
				return
			}
		} else {
			w.vols, w.volsAt, w.lastMount = vols, time.Now(), ""
		}
	}
	if !w.initialized {
		if !w.runInits(ctx, pod) {
			return
		}
		w.initialized = true
	}
	for _, c := range w.containers {
		w.ensure(ctx, pod, c)
	}
}

func (w *podWorker) makeSandbox(pod *corev1.Pod) error {
	if pod.Spec.HostNetwork {
		w.sb = &sandbox{ip: w.a.net.nodeIP}
		return nil
	}
	sb, err := w.a.net.add(string(pod.UID))
	if err != nil {
		return err
	}
	w.sb = sb
	return nil
}

// runInits runs the init containers one after the other, each to success; it says
// whether they are all done.
func (w *podWorker) runInits(ctx context.Context, pod *corev1.Pod) bool {
	for _, c := range w.inits {
		c.mu.Lock()
		running, ran, code := c.running, c.everRan, c.exitCode
		c.mu.Unlock()
		switch {
		case running:
			return false
		case ran && code == 0:
			continue
		case ran && pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			return false // the Pod has failed
		}
		w.ensure(ctx, pod, c)
		return false
	}
	return true
}

// ensure starts a container that should run and does not: the first time, or again
// after it ended when restartPolicy says so, with the kubelet's back-off (10 s,
// doubled each time, at most 5 minutes; the first restart is at once).
func (w *podWorker) ensure(ctx context.Context, pod *corev1.Pod, c *container) {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return
	}
	if c.everRan {
		policy := pod.Spec.RestartPolicy
		if c.init && policy == corev1.RestartPolicyAlways {
			policy = corev1.RestartPolicyOnFailure
		}
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && c.exitCode == 0) {
			c.mu.Unlock()
			return
		}
		if c.nextStart.IsZero() {
			back := time.Duration(0)
			if c.restarts > 0 {
				back = min(10*time.Second<<min(c.restarts-1, 5), 5*time.Minute)
			}
			if time.Since(c.startedAt) > 10*time.Minute {
				back = 0
			}
			c.nextStart = time.Now().Add(back)
		}
		if time.Now().Before(c.nextStart) {
			c.waiting = "CrashLoopBackOff"
			c.waitingMsg = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", time.Until(c.nextStart).Round(time.Second), c.spec.Name, pod.Name)
			c.mu.Unlock()
			return
		}
		t := c.terminated()
		c.last = t
		c.restarts++
		c.nextStart = time.Time{}
	}
	c.mu.Unlock()
	if err := c.start(ctx, pod, w.vols); err != nil {
		var ce configError
		msg := err.Error()
		if msg != w.lastConfig {
			w.lastConfig = msg
			reason := "Failed"
			if errors.As(err, &ce) {
				reason = "FailedCreateContainerConfig"
			}
			w.a.events.Eventf(pod, corev1.EventTypeWarning, reason, "Error: %s", msg)
		}
		return
	}
	w.lastConfig = ""
}

// done says whether the Pod has finished for good (restartPolicy Never or OnFailure):
// every container ended and none will run again.
func (w *podWorker) done(pod *corev1.Pod) bool {
	ph := phase(pod, w.inits, w.containers)
	return ph == corev1.PodSucceeded || ph == corev1.PodFailed
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func phase(pod *corev1.Pod, inits, cs []*container) corev1.PodPhase {
	policy := pod.Spec.RestartPolicy
	for _, c := range inits {
		c.mu.Lock()
		failed := c.everRan && !c.running && c.exitCode != 0
		c.mu.Unlock()
		if failed && policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
	}
	anyRunning, allEnded, allOK, anyStarted := false, true, true, false
	for _, c := range cs {
		c.mu.Lock()
		if c.running {
			anyRunning = true
		}
		if c.everRan {
			anyStarted = true
		}
		if !c.everRan || c.running {
			allEnded = false
		} else if c.exitCode != 0 {
			allOK = false
		}
		c.mu.Unlock()
	}
	switch {
	case !anyStarted:
		return corev1.PodPending
	case anyRunning || !allEnded || policy == corev1.RestartPolicyAlways:
		return corev1.PodRunning
	case allOK:
		return corev1.PodSucceeded
	case policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	}
	return corev1.PodRunning // OnFailure: restarted
}

// status is the Pod's status as this agent sees it; the conditions the agent does not
// own (PodScheduled, DisruptionTarget, ...) are kept as they are.
func (w *podWorker) status(pod *corev1.Pod) corev1.PodStatus {
	s := *pod.Status.DeepCopy()
	s.Phase = phase(pod, w.inits, w.containers)
	s.HostIP = w.a.net.nodeIP.String()
	s.HostIPs = []corev1.HostIP{{IP: s.HostIP}}
	if w.sb != nil {
		s.PodIP = w.sb.ip.String()
		s.PodIPs = []corev1.PodIP{{IP: s.PodIP}}
	} else if s.Phase != corev1.PodRunning {
		s.PodIP, s.PodIPs = "", nil
	}
	if !w.started.IsZero() && s.StartTime == nil {
		t := apiTime(w.started)
		s.StartTime = &t
	}
	s.InitContainerStatuses = nil
	for _, c := range w.inits {
		st := c.status()
		st.Ready = st.State.Terminated != nil && st.State.Terminated.ExitCode == 0
		s.InitContainerStatuses = append(s.InitContainerStatuses, st)
	}
	s.ContainerStatuses = nil
	allReady := len(w.containers) > 0
	for _, c := range w.containers {
		st := c.status()
		allReady = allReady && st.Ready
		s.ContainerStatuses = append(s.ContainerStatuses, st)
	}
	if pod.DeletionTimestamp != nil {
		allReady = false
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) {
		status := corev1.ConditionFalse
		if ok {
			status, reason = corev1.ConditionTrue, ""
		}
		c := corev1.PodCondition{Type: t, Status: status, Reason: reason, LastTransitionTime: apiTime(time.Now())}
		for i, old := range s.Conditions {
			if old.Type == t {
				if old.Status == status {
					c.LastTransitionTime = old.LastTransitionTime
				}
				c.LastProbeTime = old.LastProbeTime
				s.Conditions[i] = c
				return
			}
		}
		s.Conditions = append(s.Conditions, c)
	}
	cond(corev1.PodReadyToStartContainers, w.sb != nil, "")
	cond(corev1.PodInitialized, w.initialized, "ContainersNotInitialized")
	cond(corev1.ContainersReady, allReady, "ContainersNotReady")
	cond(corev1.PodReady, allReady, "ContainersNotReady")
	s.Message, s.Reason = "", ""
	for _, c := range s.ContainerStatuses {
		if c.State.Waiting != nil && c.State.Waiting.Message != "" {
			s.Message = fmt.Sprintf("container %s: %s", c.Name, c.State.Waiting.Message)
		}
	}
	if s.QOSClass == "" {
		s.QOSClass = corev1.PodQOSBestEffort
	}
	return s
}

// writeStatus writes the Pod's status through pods/status when it differs from what
// the API server has.
func (w *podWorker) writeStatus(ctx context.Context, pod *corev1.Pod) {
	want := w.status(pod)
	if apiequality.Semantic.DeepEqual(pod.Status, want) {
		return
	}
	p := pod.DeepCopy()
	p.Status = want
	got, err := w.a.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	switch {
	case err == nil:
		w.mu.Lock()
		if w.pod.ResourceVersion == pod.ResourceVersion {
			w.pod = got
		}
		w.mu.Unlock()
	case apierrors.IsConflict(err):
		// A newer Pod is on its way through the informer; the next sync writes.
		if fresh, gerr := w.a.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); gerr == nil && fresh.UID == w.uid {
			w.update(fresh)
		}
	case apierrors.IsNotFound(err):
	default:
		if !strings.Contains(err.Error(), "context canceled") {
			w.a.logf("status of Pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
}
