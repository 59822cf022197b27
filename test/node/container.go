package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// container is one container of a Pod: its process while it runs, and what the
// kubelet reports about it.
type container struct {
	w    *podWorker
	spec corev1.Container
	init bool

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	running    bool
	id         string // containerID of the current or last run
	imageID    string
	startedAt  time.Time
	restarts   int32
	everRan    bool
	exitCode   int32
	signal     int32
	reason     string // of the last termination: Completed, Error
	message    string
	finishedAt time.Time
	last       *corev1.ContainerStateTerminated // the run before the current one
	waiting    string                           // reason while not running: ContainerCreating, ErrImagePull, CrashLoopBackOff, ...
	waitingMsg string
	nextStart  time.Time
	ready      bool // readiness
	started    bool // startup probe passed (or there is none)
	probes     context.CancelFunc
	stopping   bool
}

func (c *container) logPath(run int32) string {
	return filepath.Join(c.w.dir, "logs", c.spec.Name, strconv.Itoa(int(run))+".log")
}

// start runs the container's program in the Pod: a fresh mount and UTS namespace, the
// Pod's network namespace, the volume mounts, the environment, its own process group.
func (c *container) start(ctx context.Context, pod *corev1.Pod, vols map[string]string) error {
	img, err := c.w.a.c.images.lookup(c.spec.Image)
	if err != nil {
		c.setWaiting("ErrImagePull", err.Error())
		return err
	}
	if err := supportedProbes(&c.spec); err != nil {
		c.setWaiting("CreateContainerConfigError", err.Error())
		return err
	}
	env, err := c.w.environment(ctx, pod, &c.spec)
	if err != nil {
		c.setWaiting("CreateContainerConfigError", err.Error())
		return err
	}
	vals := envMap(env)
	command := make([]string, len(c.spec.Command))
	for i, s := range c.spec.Command {
		command[i] = expand(s, vals)
	}
	args := make([]string, len(c.spec.Args))
	for i, s := range c.spec.Args {
		args[i] = expand(s, vals)
	}
	bin, argv, err := img.program(command, args)
	if err != nil {
		c.setWaiting("RunContainerError", err.Error())
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	execArgs := []string{podExecCommand, "--hostname", podHostname(pod)}
	if ns := c.w.sb.netns; ns != "" {
		execArgs = append(execArgs, "--netns", filepath.Join("/run/netns", ns))
	}
	if c.spec.WorkingDir != "" {
		execArgs = append(execArgs, "--workdir", c.spec.WorkingDir)
	}
	for _, m := range c.spec.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			err := fmt.Errorf("volume mount %q: no volume of that name", m.Name)
			c.setWaiting("CreateContainerConfigError", err.Error())
			return err
		}
		if m.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+m.SubPath))
		}
		spec := src + "=" + m.MountPath
		if m.ReadOnly {
			spec += "=ro"
		}
		execArgs = append(execArgs, "--mount", spec)
	}
	execArgs = append(append(execArgs, "--", bin), argv...)

	c.mu.Lock()
	run := c.restarts
	c.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.logPath(run)), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(c.logPath(run), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// The process lives until the agent stops it (stop) or it ends; not a context.
	cmd := exec.Command(self, execArgs...) //nolint:noctx // lifetime managed by stop
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logf.Close()
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		_ = logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		c.setWaiting("RunContainerError", err.Error())
		return err
	}
	pidFile := filepath.Join(c.w.a.c.stateDir, "pids", strconv.Itoa(cmd.Process.Pid))
	_ = os.WriteFile(pidFile, []byte(procStart(cmd.Process.Pid)), 0o600)
	lw := &logWriter{f: logf}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); lw.copy("stdout", stdout) }()
	go func() { defer copies.Done(); lw.copy("stderr", stderr) }()

	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.running, c.everRan, c.stopping = true, true, false
	c.waiting, c.waitingMsg = "", ""
	c.startedAt = time.Now()
	c.id = fmt.Sprintf("postern-node://%s-%s-%d", c.w.uid, c.spec.Name, run)
	c.imageID = img.id
	c.ready = false
	c.started = c.spec.StartupProbe == nil
	c.mu.Unlock()
	c.w.a.events.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)

	probeCtx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.probes = cancel
	c.mu.Unlock()
	go c.probe(probeCtx)

	go func() {
		copies.Wait()
		err := cmd.Wait()
		_ = logf.Close()
		killGroup(cmd.Process.Pid) // what the program left behind in its group
		_ = os.Remove(pidFile)
		cancel()
		c.exitedWith(cmd.ProcessState, err)
		close(exited)
		c.w.notify()
	}()
	return nil
}

func (c *container) setWaiting(reason, msg string) {
	c.mu.Lock()
	c.waiting, c.waitingMsg = reason, msg
	c.mu.Unlock()
}

func (c *container) exitedWith(st *os.ProcessState, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running, c.ready, c.started = false, false, false
	c.finishedAt = time.Now()
	c.exitCode, c.signal = 0, 0
	if st != nil {
		c.exitCode = int32(st.ExitCode())
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			c.signal = int32(ws.Signal())
			c.exitCode = 128 + c.signal
		}
	} else if err != nil {
		c.exitCode = 128
	}
	c.reason = "Completed"
	if c.exitCode != 0 {
		c.reason = "Error"
	}
}

// stop ends the running process: the preStop hook, SIGTERM to its process group,
// SIGKILL when grace has passed.
func (c *container) stop(pod *corev1.Pod, grace time.Duration, why string) {
	c.mu.Lock()
	if !c.running || c.stopping {
		exited := c.exited
		c.mu.Unlock()
		if exited != nil {
			<-exited
		}
		return
	}
	c.stopping = true
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	c.w.a.events.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s: %s", c.spec.Name, why)
	deadline := time.Now().Add(grace)
	if h := c.spec.Lifecycle; h != nil && h.PreStop != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := c.runHook(ctx, h.PreStop); err != nil {
			c.w.a.events.Eventf(pod, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
		cancel()
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Until(deadline)):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// runHook runs a lifecycle handler: httpGet, tcpSocket or sleep.
func (c *container) runHook(ctx context.Context, h *corev1.LifecycleHandler) error {
	switch {
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return nil
	case h.HTTPGet != nil:
		return c.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		return c.tcpSocket(ctx, h.TCPSocket)
	}
	return errors.New("exec hooks are not supported by the test node agent")
}

// status is the container's ContainerStatus.
func (c *container) status() corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: c.imageID, ContainerID: c.id,
		RestartCount: c.restarts, Ready: c.running && c.ready && c.started,
		Started: ptr.To(c.running && c.started), LastTerminationState: corev1.ContainerState{Terminated: c.last},
	}
	switch {
	case c.running:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: apiTime(c.startedAt)}
	case c.waiting != "" || !c.everRan:
		reason := c.waiting
		if reason == "" {
			reason = "ContainerCreating"
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: c.waitingMsg}
	default:
		s.State.Terminated = c.terminated()
	}
	return s
}

func (c *container) terminated() *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: c.exitCode, Signal: c.signal, Reason: c.reason, Message: c.message,
		StartedAt: apiTime(c.startedAt), FinishedAt: apiTime(c.finishedAt), ContainerID: c.id,
	}
}

// apiTime is t as the API server keeps it: whole seconds, so a status compares equal
// to itself after a round trip.
func apiTime(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(t.Unix(), 0))
}

// logWriter keeps a container's output as the CRI does: "<RFC 3339 time> <stream> F
// <line>", one line each, both streams in one file.
type logWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (l *logWriter) copy(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			tag := "F"
			if !strings.HasSuffix(line, "\n") {
				tag, line = "P", line+"\n"
			}
			l.mu.Lock()
			_, _ = fmt.Fprintf(l.f, "%s %s %s %s", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, line)
			l.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// killGroup kills a process group; one already gone is no error worth telling.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// procStart is the start time of a process (field 22 of /proc/pid/stat), so that a
// process id recorded by an earlier run is only killed if it is still that process.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return f[19]
		}
	}
	return ""
}
