package upstream

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/route"
)

// LimitIdle returns body (a response body of the endpoint at addr, of
// backend be) made to end with ErrIdleTimeout when the endpoint stays
// silent for longer than d while the proxy waits for more of it: what the
// net/http adapter relays through. The engine's own connections bound
// their reads themselves (Conn.ReadIdle).
func (c *Cluster) LimitIdle(body io.ReadCloser, d time.Duration, be *route.Backend, addr string) io.ReadCloser {
	return &idleBody{ReadCloser: body, timeout: d, c: c, backend: be, upstream: addr}
}

// idleBody is a response body whose every read must get something within
// timeout. The timer runs only while a Read waits for the endpoint, so a
// slow client, which makes the proxy read less often, never trips it.
// When it fires it closes the body, which ends the connection to the
// endpoint and makes the waiting Read fail.
type idleBody struct {
	io.ReadCloser
	timeout  time.Duration
	timer    *time.Timer // nil before the first Read
	fired    atomic.Bool
	c        *Cluster
	backend  *route.Backend
	upstream string
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.timer == nil {
		b.timer = time.AfterFunc(b.timeout, b.expire)
	} else {
		b.timer.Reset(b.timeout)
	}
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	if err != nil && b.fired.Load() {
		err = ErrIdleTimeout{}
	}
	return n, err
}

func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	return b.ReadCloser.Close()
}

func (b *idleBody) expire() {
	// Count and log before closing: the close is what the client and the
	// endpoint observe, so anything that reacts to it (a test reading the
	// metric, an operator correlating the cut) finds the record in place.
	b.fired.Store(true)
	b.c.IdleTimedOut(b.backend, b.upstream, b.timeout)
	_ = b.ReadCloser.Close()
}
