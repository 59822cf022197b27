package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// binaryResult is what measureBinary reports.
type binaryResult struct {
	files                   int
	yamlBytes               uint64
	ready                   time.Duration // from exec to the first /readyz 200
	rssReady, rssLater, hwm uint64
	changes                 []time.Duration // from a file rename to the first request routed by it
}

// changedBody is what the backend that changed EndpointSlices point to
// answers.
const changedBody = "changed\n"

// measureBinary starts the Postern binary on a generated manifests folder of
// n Ingresses, times it to ready, then rewrites one EndpointSlice at a time
// to point at a live backend and times until a request is routed there.
func measureBinary(ctx context.Context, postern string, n, per, changes int) (binaryResult, error) {
	var r binaryResult
	if _, err := os.Stat(postern); err != nil {
		return r, fmt.Errorf("%w (make build makes it)", err)
	}
	top, err := os.MkdirTemp("", "postern-scale-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(top)
	dir := filepath.Join(top, "manifests")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return r, err
	}
	if err := writeManifests(dir, n, per); err != nil {
		return r, fmt.Errorf("write manifests: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return r, err
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			r.files++
			r.yamlBytes += uint64(info.Size())
		}
	}

	// The backend changed EndpointSlices point to.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	backend := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, changedBody)
	})}
	go func() { _ = backend.Serve(ln) }()
	defer backend.Close()
	backendPort := ln.Addr().(*net.TCPAddr).Port

	ports, err := freePorts(ctx, 3)
	if err != nil {
		return r, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	metricsAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	var log syncBuffer
	cmd := exec.CommandContext(ctx, postern, "--manifests", dir, "--http-addr", httpAddr,
		"--https-addr", "127.0.0.1:"+strconv.Itoa(ports[1]), "--metrics-addr", metricsAddr,
		"--access-log=false", "--acme-directory=", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid

	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	readyz := "http://" + metricsAddr + "/readyz"
	for deadline := start.Add(2 * time.Minute); ; {
		if code, _, err := get(ctx, client, readyz, ""); err == nil && code == http.StatusOK {
			break
		}
		select {
		case <-exited:
			return r, fmt.Errorf("postern exited before ready (%w): %s", waitErr, tail(log.String()))
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("not ready after 2 minutes: %s", tail(log.String()))
		}
	}
	r.ready = time.Since(start)
	r.rssReady = procStatus(pid, "VmRSS")
	time.Sleep(2 * time.Second)
	r.rssLater = procStatus(pid, "VmRSS")
	r.hwm = procStatus(pid, "VmHWM")

	for c := range changes {
		i := (c*7919 + 42) % n
		url := "http://" + httpAddr + "/"
		// The route exists and its endpoints refuse connections: 502.
		code, _, err := get(ctx, client, url, host(i))
		if err != nil {
			return r, fmt.Errorf("before the change, %s: %w", host(i), err)
		}
		if code != http.StatusBadGateway {
			return r, fmt.Errorf("before the change, %s answered %d, want 502", host(i), code)
		}
		tmp := filepath.Join(top, "next.yaml")
		if err := os.WriteFile(tmp, namespaceYAML(i%namespaces, n, per, i, "127.0.0.1", backendPort), 0o644); err != nil {
			return r, err
		}
		changed := time.Now()
		if err := os.Rename(tmp, manifestFile(dir, i%namespaces)); err != nil {
			return r, err
		}
		for deadline := changed.Add(10 * time.Second); ; {
			if code, body, err := get(ctx, client, url, host(i)); err == nil && code == http.StatusOK && body == changedBody {
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("change %d (%s) not routed after 10 s: %s", c, host(i), tail(log.String()))
			}
			time.Sleep(2 * time.Millisecond)
		}
		r.changes = append(r.changes, time.Since(changed))
	}
	return r, nil
}

// get sends one GET to url with the Host header host (unless empty) and
// returns the status and body.
func get(ctx context.Context, client *http.Client, url, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// freePorts returns n ports free on 127.0.0.1 a moment ago.
func freePorts(ctx context.Context, n int) ([]int, error) {
	var lc net.ListenConfig
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last lines of a process's output, for an error message.
func tail(s string) string {
	const limit = 800
	if len(s) > limit {
		s = "..." + s[len(s)-limit:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// syncBuffer is a bytes.Buffer that a process's output can be written to
// while it is read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
