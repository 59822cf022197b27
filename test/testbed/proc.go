package testbed

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the testbed or a test started. Its output goes to a buffer (and to
// a log file when one is given) that a failing test prints.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Out  *SyncBuffer
	done chan struct{}
}

// SyncBuffer is a bytes.Buffer safe for one writer and many readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartProc starts bin with args. The process is killed if the caller dies
// (Pdeathsig), and lives until Stop or Kill otherwise.
func StartProc(name, bin string, args ...string) (*Proc, error) {
	return StartProcTo(nil, name, bin, args...)
}

// StartProcTo is StartProc with the output also written to log, when it is not nil.
func StartProcTo(log io.Writer, name, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Out: &SyncBuffer{}, done: make(chan struct{})}
	// Processes live until Stop or Kill, not a context: their owner decides.
	p.Cmd = exec.Command(bin, args...) //nolint:noctx // lifetime managed by Stop/Kill
	var out io.Writer = p.Out
	if log != nil {
		out = io.MultiWriter(p.Out, log)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM, then SIGKILL after 10 s.
func (p *Proc) Stop() { p.StopWithin(10 * time.Second) }

// StopWithin sends SIGTERM, then SIGKILL after grace.
func (p *Proc) StopWithin(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits for the end.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Tail is the last n lines of the output.
func (p *Proc) Tail(n int) string { return LastLines(p.Out.String(), n) }

// LastLines is the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
