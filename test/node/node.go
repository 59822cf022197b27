package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// agent is one Node: its registration, its Lease, and a worker per Pod bound to it.
type agent struct {
	c      *config
	client kubernetes.Interface
	net    *network
	events record.EventRecorder
	pods   cache.SharedIndexInformer

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup
}

func newAgent(c *config) (*agent, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "postern-node/" + c.nodeName
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"pods", "pids"} {
		if err := os.MkdirAll(filepath.Join(c.stateDir, d), 0o700); err != nil {
			return nil, err
		}
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &agent{
		c: c, client: client,
		net:     newNetwork(c.bridge, c.netnsPrefix, c.podCIDR),
		events:  b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: c.nodeName}),
		workers: map[types.UID]*podWorker{},
	}, nil
}

func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s: %s\n", time.Now().Format("15:04:05.000"), a.c.nodeName, fmt.Sprintf(format, args...))
}

func (a *agent) run(ctx context.Context) error {
	killRecordedPids(filepath.Join(a.c.stateDir, "pids"))
	if err := a.net.setup(); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer a.net.teardown()
	if err := a.register(ctx); err != nil {
		return fmt.Errorf("register Node %s: %w", a.c.nodeName, err)
	}
	srv, err := a.serve()
	if err != nil {
		return fmt.Errorf("kubelet port: %w", err)
	}
	defer func() { _ = srv.Close() }()

	f := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.c.nodeName).String()
	}))
	a.pods = f.Core().V1().Pods().Informer()
	if _, err := a.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.podChanged(o) },
		UpdateFunc: func(_, o any) { a.podChanged(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				a.podGone(p.UID)
			}
		},
	}); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	f.Start(runCtx.Done())
	go a.heartbeat(ctx)
	a.logf("Node registered; Pods on %s, kubelet port %s:%d", a.c.podCIDR, a.net.nodeIP, a.c.kubeletPort)
	<-ctx.Done()

	// Shutting down: every Pod's containers are stopped within their grace periods
	// (the Pods stay bound; the API server keeps them), then the network goes.
	a.logf("stopping")
	a.mu.Lock()
	for _, w := range a.workers {
		w.shutdown()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

func (a *agent) podChanged(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workers[p.UID]
	if w == nil {
		if isTerminal(p) && p.DeletionTimestamp == nil {
			return // finished before this agent started: nothing to run
		}
		w = newPodWorker(a, p)
		a.workers[p.UID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run()
			a.mu.Lock()
			delete(a.workers, p.UID)
			a.mu.Unlock()
		}()
		return
	}
	w.update(p)
}

func (a *agent) podGone(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.workers[uid]; w != nil {
		w.removed()
	}
}

// register creates the Node, or takes over the one of an earlier run of this agent.
func (a *agent) register(ctx context.Context) error {
	labels := map[string]string{
		"kubernetes.io/hostname": a.c.nodeName,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
	}
	for k, v := range a.c.labels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.c.nodeName, Labels: labels},
		Spec:       corev1.NodeSpec{PodCIDR: a.c.podCIDR.String(), PodCIDRs: []string{a.c.podCIDR.String()}},
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	if err := a.postStatus(ctx); err != nil {
		return err
	}
	return a.renewLease(ctx)
}

// heartbeat renews the Lease every quarter of its duration and posts the Node's
// status every status interval, as the kubelet does.
func (a *agent) heartbeat(ctx context.Context) {
	lease := time.NewTicker(a.c.leaseDuration / 4)
	status := time.NewTicker(a.c.statusEvery)
	defer lease.Stop()
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
				a.logf("renew Lease: %v", err)
			}
		case <-status.C:
			if err := a.postStatus(ctx); err != nil && ctx.Err() == nil {
				a.logf("post Node status: %v", err)
			}
		}
	}
}

func (a *agent) renewLease(ctx context.Context) error {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, a.c.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := a.client.CoreV1().Nodes().Get(ctx, a.c.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.c.nodeName, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.c.nodeName),
				LeaseDurationSeconds: ptr.To(int32(a.c.leaseDuration / time.Second)), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(a.c.nodeName)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(a.c.leaseDuration / time.Second))
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// postStatus writes the Node's conditions (Ready), addresses, capacity and the
// kubelet port.
func (a *agent) postStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := a.client.CoreV1().Nodes().Get(ctx, a.c.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		want := []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "postern test node agent is posting ready status"},
		}
		for i := range want {
			want[i].LastHeartbeatTime = now
			want[i].LastTransitionTime = now
			for _, old := range node.Status.Conditions {
				if old.Type == want[i].Type && old.Status == want[i].Status {
					want[i].LastTransitionTime = old.LastTransitionTime
				}
			}
		}
		node.Status.Conditions = want
		node.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.net.nodeIP.String()},
			{Type: corev1.NodeHostName, Address: a.c.nodeName},
		}
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
			corev1.ResourceMemory:           *resource.NewQuantity(memTotal(), resource.BinarySI),
			corev1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
			corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		}
		node.Status.Capacity = capacity
		node.Status.Allocatable = capacity
		node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(a.c.kubeletPort)
		node.Status.NodeInfo = corev1.NodeSystemInfo{
			MachineID: a.c.nodeName, SystemUUID: a.c.nodeName, BootID: bootID,
			KernelVersion: kernelVersion(), OSImage: "Postern test node agent",
			ContainerRuntimeVersion: "postern-node://" + a.c.version,
			KubeletVersion:          a.c.version,
			OperatingSystem:         "linux", Architecture: runtime.GOARCH,
		}
		_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// bootID changes with every start of the agent, as a machine's does with a boot:
// the containers of a Node that comes back are new.
var bootID = strconv.FormatInt(time.Now().UnixNano(), 36)

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 8 << 30
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// killRecordedPids kills the process groups an earlier run of the agent left: each
// container's process id is kept in dir while it runs.
func killRecordedPids(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		if started, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && len(started) > 0 && string(started) == procStart(pid) {
			killGroup(pid)
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
}
