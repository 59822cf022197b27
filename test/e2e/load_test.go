//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loadOptions configure startLoad. Zero values mean the documented defaults.
type loadOptions struct {
	// host and path are what every request asks for ("/" when empty).
	host, path string
	// backends are the names of the echo backends a response may come
	// from; a 200 from any other is a failure. Empty accepts any backend.
	backends []string
	// workers is how many requests are in flight at most, each worker on a
	// keep-alive connection of its own. Zero means 8.
	workers int
	// interval is each worker's pause between two requests, so that the
	// load stays well below what the two shared cores of CI can take.
	// Zero means 10 ms (at most 800 requests a second with 8 workers).
	interval time.Duration
}

// outcome is what happened to one request of the load.
type outcome struct {
	start time.Time
	took  time.Duration
	// status is the response's status; 0 when there was none.
	status int
	// err says why the request failed; empty when it succeeded.
	err string
	// refused: the connection was refused, nothing was sent.
	refused bool
	// cut: the response began but its body ended in an error.
	cut bool
}

// load is a small load generator: a fixed number of workers send GET
// requests through a Postern, each checked for status 200 and a body from
// an expected backend, until stop.
type load struct {
	opts loadOptions
	addr string
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	res  loadResult

	mu       sync.Mutex
	outcomes []outcome

	// refusedFrom, when set (Unix nanoseconds), is the time from which a
	// refused connection is expected, not a failure: the listener was
	// closed on purpose.
	refusedFrom atomic.Int64
}

// loadResult sums up a load run.
type loadResult struct {
	// sent counts every request started; ok those answered 200 by an
	// expected backend; refused those refused after refusedFrom (not
	// failures); failed all others.
	sent, ok, failed, refused int
	// p50 and p99 are the latencies of the requests that succeeded.
	p50, p99 time.Duration
	// failures are the failed requests, in the order they started.
	failures []outcome
}

// startLoad starts sending requests through p; stop ends it. It stops by
// itself when t ends.
func startLoad(t testing.TB, p *Postern, opts loadOptions) *load {
	t.Helper()
	if opts.path == "" {
		opts.path = "/"
	}
	if opts.workers == 0 {
		opts.workers = 8
	}
	if opts.interval == 0 {
		opts.interval = 10 * time.Millisecond
	}
	l := &load{opts: opts, addr: p.HTTPAddr, quit: make(chan struct{})}
	for i := range opts.workers {
		l.wg.Go(func() { l.work(time.Duration(i) * opts.interval / time.Duration(opts.workers)) })
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// work sends requests one after the other on one keep-alive connection,
// after an initial delay that spreads the workers out.
func (l *load) work(delay time.Duration) {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	pause := time.NewTimer(delay)
	defer pause.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-pause.C:
		}
		o := l.do(c)
		l.mu.Lock()
		l.outcomes = append(l.outcomes, o)
		l.mu.Unlock()
		pause.Reset(l.opts.interval)
	}
}

// do sends one request and judges the answer.
func (l *load) do(c *http.Client) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := outcome{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.addr+l.opts.path, nil)
	if err != nil {
		o.err = err.Error()
		return o
	}
	req.Host = l.opts.host
	resp, err := c.Do(req)
	if err != nil {
		o.took = time.Since(o.start)
		o.err = err.Error()
		o.refused = errors.Is(err, syscall.ECONNREFUSED)
		return o
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	o.took = time.Since(o.start)
	o.status = resp.StatusCode
	switch {
	case err != nil:
		o.cut = true
		o.err = fmt.Sprintf("status %d, body cut short: %v", resp.StatusCode, err)
	case resp.StatusCode != http.StatusOK:
		o.err = fmt.Sprintf("status %d: %q", resp.StatusCode, firstLine(string(body)))
	case !fromBackend(string(body), l.opts.backends):
		o.err = fmt.Sprintf("answered by the wrong backend: %q", firstLine(string(body)))
	}
	return o
}

// fromBackend reports whether an echo body came from one of names (any
// backend when names is empty); a name ending in * is a prefix.
func fromBackend(body string, names []string) bool {
	if !strings.HasPrefix(body, "backend: ") {
		return false
	}
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if prefix, ok := strings.CutSuffix(n, "*"); ok {
			if strings.HasPrefix(body, "backend: "+prefix) {
				return true
			}
		} else if strings.HasPrefix(body, "backend: "+n+" ") {
			return true
		}
	}
	return false
}

// expectRefusedFrom makes connections refused from t on expected: they are
// counted apart, not as failures.
func (l *load) expectRefusedFrom(t time.Time) { l.refusedFrom.Store(t.UnixNano()) }

// stop ends the load, waits for the requests in flight and sums up.
func (l *load) Stop() loadResult {
	l.once.Do(func() {
		close(l.quit)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		from := l.refusedFrom.Load()
		var took []time.Duration
		for _, o := range l.outcomes {
			l.res.sent++
			switch {
			case o.err == "":
				l.res.ok++
				took = append(took, o.took)
			case o.refused && from != 0 && o.start.Add(o.took).UnixNano() >= from:
				// Judged by when the request ended: one sent before the
				// listener closed whose retries met the closed listener
				// was refused after it, as expected.
				l.res.refused++
			default:
				l.res.failed++
				l.res.failures = append(l.res.failures, o)
			}
		}
		l.res.p50, l.res.p99 = quantile(took, 0.50), quantile(took, 0.99)
	})
	return l.res
}

// outcomesFrom returns the outcomes of the requests started in [from, to).
func (l *load) outcomesFrom(from, to time.Time) []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []outcome
	for _, o := range l.outcomes {
		if !o.start.Before(from) && o.start.Before(to) {
			out = append(out, o)
		}
	}
	return out
}

// String is the counts of a load run, as the report line shows them.
func (r loadResult) String() string {
	s := fmt.Sprintf("sent=%d ok=%d failed=%d p50=%s p99=%s", r.sent, r.ok, r.failed, r.p50, r.p99)
	if r.refused > 0 {
		s += fmt.Sprintf(" refused=%d", r.refused)
	}
	return s
}

// failuresText lists up to n failures, for an error message.
func (r loadResult) failuresText(n int) string {
	var b strings.Builder
	for i, f := range r.failures {
		if i == n {
			fmt.Fprintf(&b, "\n  ... and %d more", len(r.failures)-n)
			break
		}
		fmt.Fprintf(&b, "\n  %s (+%s): %s", f.start.Format("15:04:05.000"), f.took.Round(time.Millisecond), f.err)
	}
	return b.String()
}

// reportMu serialises appends to the report file.
var reportMu sync.Mutex

// report logs the line of one fault scenario,
//
//	fault <name>: sent=N ok=N failed=N p50=... p99=...
//
// and, when $POSTERN_E2E_REPORT names a file, appends it there as a row of
// the Markdown table run.sh prints at the end.
func report(t testing.TB, name string, r loadResult, note string) {
	t.Helper()
	line := fmt.Sprintf("fault %s: %s", name, r)
	if note != "" {
		line += " (" + note + ")"
	}
	t.Log(line)
	path := os.Getenv("POSTERN_E2E_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	_, err = fmt.Fprintf(f, "| %s | %d | %d | %d | %d | %s | %s | %s |\n",
		name, r.sent, r.ok, r.failed, r.refused, r.p50, r.p99, strings.ReplaceAll(note, "|", `\|`))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Errorf("report: %v", err)
	}
}
