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
	b := &binaryRun{postern: postern, n: n, per: per, top: top, dir: filepath.Join(top, "manifests")}
	if r.files, r.yamlBytes, err = b.writeFolder(); err != nil {
		return r, err
	}
	backend, err := b.startBackend(ctx)
	if err != nil {
		return r, err
	}
	defer backend.Close()
	if err := b.startPostern(ctx); err != nil {
		return r, err
	}
	defer b.stopPostern()

	b.client = &http.Client{Timeout: 2 * time.Second}
	defer b.client.CloseIdleConnections()
	if err := b.waitReady(ctx); err != nil {
		return r, err
	}
	r.ready = time.Since(b.start)
	pid := b.cmd.Process.Pid
	r.rssReady = procStatus(pid, "VmRSS")
	time.Sleep(2 * time.Second)
	r.rssLater = procStatus(pid, "VmRSS")
	r.hwm = procStatus(pid, "VmHWM")

	for c := range changes {
		d, err := b.timeChange(ctx, c)
		if err != nil {
			return r, err
		}
		r.changes = append(r.changes, d)
	}
	return r, nil
}

// binaryRun is what one measureBinary sets up: the manifests folder, the
// backend that changed EndpointSlices point to, and the running binary.
type binaryRun struct {
	postern  string // the binary's path
	n, per   int    // Ingresses, and endpoints per EndpointSlice
	top, dir string // the temporary folder, and the manifests folder in it

	backendPort           int
	httpAddr, metricsAddr string
	client                *http.Client

	cmd     *exec.Cmd
	start   time.Time     // just before the exec
	log     syncBuffer    // the process's output
	exited  chan struct{} // closed when the process has exited
	waitErr error         // why it exited; set before exited is closed
}

// writeFolder writes the manifests of the n Ingresses into b.dir and
// returns how many files it holds and their size.
func (b *binaryRun) writeFolder() (files int, size uint64, err error) {
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		return 0, 0, err
	}
	if err := writeManifests(b.dir, b.n, b.per); err != nil {
		return 0, 0, fmt.Errorf("write manifests: %w", err)
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			files++
			size += uint64(info.Size())
		}
	}
	return files, size, nil
}

// startBackend starts the backend that changed EndpointSlices point to,
// answering changedBody, on b.backendPort.
func (b *binaryRun) startBackend(ctx context.Context) (*http.Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	backend := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, changedBody)
	})}
	go func() { _ = backend.Serve(ln) }()
	b.backendPort = ln.Addr().(*net.TCPAddr).Port
	return backend, nil
}

// startPostern starts the binary on b.dir, on free ports of 127.0.0.1.
// stopPostern stops it.
func (b *binaryRun) startPostern(ctx context.Context) error {
	ports, err := freePorts(ctx, 3)
	if err != nil {
		return err
	}
	b.httpAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	b.metricsAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
	cmd := exec.CommandContext(ctx, b.postern, "--manifests", b.dir, "--http-addr", b.httpAddr,
		"--https-addr", "127.0.0.1:"+strconv.Itoa(ports[1]), "--metrics-addr", b.metricsAddr,
		"--access-log=false", "--acme-directory=", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &b.log, &b.log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	b.start = time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	b.cmd = cmd
	b.exited = make(chan struct{})
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	return nil
}

// stopPostern sends the binary SIGTERM and kills it if it has not exited
// 15 seconds later.
func (b *binaryRun) stopPostern() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// waitReady polls the binary's /readyz until it answers 200, for at most
// 2 minutes from its start.
func (b *binaryRun) waitReady(ctx context.Context) error {
	readyz := "http://" + b.metricsAddr + "/readyz"
	for deadline := b.start.Add(2 * time.Minute); ; {
		if code, _, err := get(ctx, b.client, readyz, ""); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("postern exited before ready (%w): %s", b.waitErr, tail(b.log.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 2 minutes: %s", tail(b.log.String()))
		}
	}
}

// timeChange makes change c: it checks that the host of an Ingress picked
// from c answers 502, renames a rewritten file of its namespace, whose
// EndpointSlice for it points at the backend, over the old one, and returns
// how long until a request to the host is routed there.
func (b *binaryRun) timeChange(ctx context.Context, c int) (time.Duration, error) {
	i := (c*7919 + 42) % b.n
	url := "http://" + b.httpAddr + "/"
	// The route exists and its endpoints refuse connections: 502.
	code, _, err := get(ctx, b.client, url, host(i))
	if err != nil {
		return 0, fmt.Errorf("before the change, %s: %w", host(i), err)
	}
	if code != http.StatusBadGateway {
		return 0, fmt.Errorf("before the change, %s answered %d, want 502", host(i), code)
	}
	tmp := filepath.Join(b.top, "next.yaml")
	if err := os.WriteFile(tmp, namespaceYAML(i%namespaces, b.n, b.per, i, "127.0.0.1", b.backendPort), 0o644); err != nil {
		return 0, err
	}
	changed := time.Now()
	if err := os.Rename(tmp, manifestFile(b.dir, i%namespaces)); err != nil {
		return 0, err
	}
	for deadline := changed.Add(10 * time.Second); ; {
		if code, body, err := get(ctx, b.client, url, host(i)); err == nil && code == http.StatusOK && body == changedBody {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("change %d (%s) not routed after 10 s: %s", c, host(i), tail(b.log.String()))
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(changed), nil
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
