package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/internal/h1"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// h1Exchange is one request the engine serves, with what the metrics and
// the access log record of it.
type h1Exchange struct {
	cc   *h1ClientConn
	head *h1.Head
	resp *h1.Resp
	x    *pipeline.Exchange
	n    int // length of the request head at the start of cc.br

	headDone  bool // the head's bytes were consumed from the client buffer
	headStale bool // the client buffer was read while waiting: head's slices are not valid
	bodyCut   bool // the endpoint answered before taking the whole body: both connections end
	upHead    int  // length of the response head at the start of the endpoint connection's buffer

	start    time.Time
	path     string          // copied, for the access log
	ep       *route.Endpoint // of the last attempt; nil when none was made
	code     int
	bytesIn  int64
	bytesOut int64
	upstream time.Duration
	tried    bool // an attempt reached the point of waiting for a response
	// until is when the current attempt must be over (the route's
	// request and attempt timeouts, upstream.Settings.AttemptEnd); zero
	// for never.
	until time.Time
	// mirror is the copy of the request for mirror-target, its body
	// filled as sendBody sends it; nil: none.
	mirror *mirrorCopy
}

// mirrorOfHead returns the copy of the request head for x.Mirror, its
// fields copied out of the client buffer, with room for the body when the
// copy carries it.
func mirrorOfHead(x *pipeline.Exchange, head *h1.Head) *mirrorCopy {
	c := &mirrorCopy{to: x.Mirror, method: x.In.Method(), header: make(http.Header, len(head.Fields))}
	for _, f := range head.Fields {
		k := http.CanonicalHeaderKey(string(f.Name))
		c.header[k] = append(c.header[k], string(f.Value))
	}
	n := max(head.ContentLength, 0)
	if head.Chunked {
		n = -1
	}
	keep, lost := wantBody(x.Mirror, n)
	c.bodyLost = lost
	if keep {
		c.body = make([]byte, 0, n)
	}
	return c
}

// mirrorBody collects the body of a copy as it is sent.
type mirrorBody mirrorCopy

func (m *mirrorBody) Write(p []byte) (int, error) {
	m.body = append(m.body, p...)
	return len(p), nil
}

// sendMirror hands the copy of the request to the mirror sender, once
// the original was forwarded; a body not sent whole is not copied.
func (e *h1Engine) sendMirror(ex *h1Exchange) {
	m := ex.mirror
	ex.mirror = nil
	if m.body != nil && int64(len(m.body)) != ex.head.ContentLength {
		m.bodyLost = true
	}
	e.mirror.send(m)
}

// hasBody reports whether the request has a body.
func (ex *h1Exchange) hasBody() bool { return ex.head.Chunked || ex.head.ContentLength > 0 }

// consumeHead drops the request head from the client buffer, once.
func (ex *h1Exchange) consumeHead() {
	if !ex.headDone {
		_, _ = ex.cc.br.Discard(ex.n)
		ex.headDone = true
	}
}

// reply writes the pipeline's local answer; keep reports whether the
// connection can serve another request. A body the answer leaves unread
// is skipped when it is already in the buffer; otherwise the connection
// ends after the answer, as it does for net/http past what it discards.
func (e *h1Engine) reply(ex *h1Exchange) (keep bool) {
	x, head := ex.x, ex.head
	ex.consumeHead()
	keep = !x.Reply.Close && !head.CloseConn
	if ex.hasBody() {
		if head.Chunked || int64(ex.cc.br.Buffered()) < head.ContentLength {
			keep = false
		} else {
			_, _ = ex.cc.br.Discard(int(head.ContentLength))
		}
	}
	ex.code = x.Reply.Status
	ex.bytesOut = e.writeReply(ex, &x.Reply, keep)
	if !keep && ex.hasBody() {
		closeWriteAndWait(ex.cc)
	}
	return keep
}

// closeWriteAndWait sends the answer and a FIN, then reads and drops what
// the client still sends (up to lingerBytes, for up to rstAvoidanceDelay,
// until it closes) before the connection is closed with its body still
// coming: unread bytes at the close make the kernel answer with a reset,
// which can destroy the answer in flight (RFC 9112 §9.6; nginx's
// lingering close, net/http's wait).
func closeWriteAndWait(cc *h1ClientConn) {
	if cc.bw.Flush() != nil {
		return
	}
	if cw, ok := cc.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = cc.SetReadDeadline(time.Now().Add(rstAvoidanceDelay))
		_, _ = io.CopyN(io.Discard, cc.br, lingerBytes)
	}
}

// rstAvoidanceDelay is how long closeWriteAndWait waits at most,
// net/http's.
const rstAvoidanceDelay = 500 * time.Millisecond

// lingerBytes bounds what closeWriteAndWait reads and drops.
const lingerBytes = 4 << 20

// h1Failure is why an attempt to reach an endpoint failed.
type h1Failure struct {
	upstream.Failure
	sentBody bool // some of the client's body was read (and so cannot be sent again)
}

// forward sends the request to the endpoint the pipeline picked, retrying
// on other endpoints when that is safe (upstream.Retryable), and relays
// the response; keep reports whether the client connection can serve
// another request.
func (e *h1Engine) forward(ex *h1Exchange) (keep bool) {
	x, head, c := ex.x, ex.head, e.cluster
	if x.Mirror != nil {
		ex.mirror = mirrorOfHead(x, head)
	}
	ex.ep = x.Endpoint
	budget := x.Settings.Retries
	var tried []string
	var first time.Time // for the retry timeout only: no clock otherwise
	if x.Settings.RetryTimeout > 0 {
		first = time.Now()
	}
	for {
		pools := c.Pools(ex.ep.Address)
		pools.Begin()
		counter := c.Acquire(ex.ep.Address)
		var began time.Time
		if x.Backend.Balancer == balancer.PolicyEWMA {
			began = time.Now() // only the latency balancer needs the clock
		}
		up, fail := e.attempt(ex, pools)
		if fail == nil {
			c.Succeeded(ex.ep.Address)
			if !began.IsZero() {
				counter.Observe(time.Since(began))
			}
			// The head is written again from the client buffer: not when
			// a read of the client connection may have replaced it
			// (headStale), as for a retry.
			if !ex.hasBody() && !ex.headStale {
				if ep := e.l.Pipeline().Intercept(x, ex.resp.Status); ep != nil {
					// custom-http-errors: the endpoint's answer is dropped
					// (its connection with it) and the error backend's
					// relayed instead.
					up.Close()
					counter.Release()
					pools.End()
					ex.ep, tried = ep, nil
					continue
				}
			}
			keep = e.relay(ex, pools, up)
			counter.Release()
			pools.End()
			return keep
		}
		counter.Release()
		pools.End()
		if fail.Client() {
			// The client left, or its body broke off, was malformed or
			// too large: nothing to blame the endpoint for, and the
			// connection cannot go on.
			e.answerFailure(ex, fail.Failure, false)
			return false
		}
		c.Failed(x.Backend, ex.ep.Address, x.In.Host())
		if budget > 0 && !ex.headStale && (first.IsZero() || time.Since(first) < x.Settings.RetryTimeout) && !x.Settings.Expired() &&
			upstream.Retryable(fail.Err, e.idempotent(ex), ex.hasBody(), fail.sentBody) {
			tried = append(tried, ex.ep.Address)
			if next := c.Retry(x.Backend, x.Key, tried, fail.Err); next != nil {
				budget--
				ex.ep = next
				continue
			}
		}
		// The rest of a body that was not sent is not read: the
		// connection ends after the answer.
		bodyLeft := ex.hasBody() && !fail.sentBody
		if !bodyLeft {
			ex.consumeHead()
		}
		keep = !bodyLeft && !fail.sentBody && !head.CloseConn
		e.answerFailure(ex, fail.Failure, keep)
		return keep
	}
}

// idempotent reports whether the request may be sent twice
// (upstream.Idempotent).
func (e *h1Engine) idempotent(ex *h1Exchange) bool {
	_, hasKey := ex.x.In.Header("Idempotency-Key")
	return upstream.Idempotent(ex.x.In.Method(), hasKey > 0)
}

// answerFailure logs a failed forward and answers it with the status
// upstream.Classify gives (nothing for 499: the client is gone).
func (e *h1Engine) answerFailure(ex *h1Exchange, f upstream.Failure, keep bool) {
	x := ex.x
	code, msg := upstream.Classify(f)
	err := f.Err
	if f.Body != nil {
		err = f.Body
	}
	e.cluster.Answered(code, msg, upstream.Request{
		Method: x.In.Method(), Host: ex.cc.in.host, Backend: x.Backend, Upstream: ex.ep.Address,
	}, err)
	ex.code = code
	if code == StatusClientClosedRequest {
		return
	}
	r := pipeline.ErrorReply(code, msg)
	ex.bytesOut = e.writeReply(ex, &r, keep)
}

// attempt sends the request to ex.ep and waits for the response head, which
// it leaves parsed in ex.resp and buffered in the returned connection.
func (e *h1Engine) attempt(ex *h1Exchange, pools *upstream.Pools) (*upstream.Conn, *h1Failure) {
	x := ex.x
	s := &x.Settings
	bodyless := !ex.hasBody()
	// The attempt's time, for upstream_response_seconds and the access
	// log, runs from before the dial, as the Transport's does.
	start := time.Now()
	defer func() { ex.upstream, ex.tried = time.Since(start), true }()
	ex.until = s.AttemptEnd(start)
	up := pools.GetConn()
	reused := up != nil
	if up == nil {
		var err error
		if up, err = upstream.Dial(ex.ep.Address, s.ConnectTimeout); err != nil {
			return nil, &h1Failure{Failure: upstream.Failure{Err: err}}
		}
	} else if !bodyless && !up.Alive() {
		// A body cannot be sent twice: make sure the connection was not
		// closed by the endpoint while idle before it goes out.
		up.Close()
		var err error
		if up, err = upstream.Dial(ex.ep.Address, s.ConnectTimeout); err != nil {
			return nil, &h1Failure{Failure: upstream.Failure{Err: err}}
		}
		reused = false
	}
	e.writeRequestHead(up, ex)
	if !bodyless {
		if fail := e.sendBody(ex, up); fail != nil {
			return nil, fail
		}
		if ex.bodyCut {
			return up, nil
		}
	}
	err := up.W.Flush()
	if err == nil {
		err = e.waitResponseHead(ex, up)
	}
	if err != nil && reused && bodyless && !ex.headStale && up.R.Buffered() == 0 && !upstream.IsTimeout(err) {
		// An idle connection the endpoint had closed: send the request
		// again, once, on a new one (nothing of it can have been acted
		// on: the endpoint read nothing before closing).
		up.Close()
		if up, err = upstream.Dial(ex.ep.Address, s.ConnectTimeout); err != nil {
			return nil, &h1Failure{Failure: upstream.Failure{Err: err}}
		}
		e.writeRequestHead(up, ex)
		if err = up.W.Flush(); err == nil {
			err = e.waitResponseHead(ex, up)
		}
	}
	if err != nil {
		up.Close()
		if errors.Is(err, upstream.ErrClientGone) {
			return nil, &h1Failure{Failure: upstream.Failure{Err: err, ClientGone: true}, sentBody: true}
		}
		// After a wait the client was watched through, the head may be
		// gone from the client buffer: no retry then (forward checks
		// headStale).
		return nil, &h1Failure{Failure: upstream.Failure{Err: err}, sentBody: !bodyless}
	}
	ex.consumeHead()
	return up, nil
}

// sendBody relays the request body to up after its head, bounded by the
// route's body limit. When the endpoint stops taking it but answered
// first (a 413, a 401), that answer is the client's (ex.bodyCut), as
// net/http's Transport passes it on.
func (e *h1Engine) sendBody(ex *h1Exchange, up *upstream.Conn) *h1Failure {
	head, br, s := ex.head, ex.cc.br, &ex.x.Settings
	// The head's bytes are still in br (head's slices point there): only
	// once they are written can they go, and the body follows.
	ex.consumeHead()
	// An endpoint that stops reading the body must not hold the request
	// for ever: each write gets the send timeout, else the response
	// timeout.
	up.WriteIdle = s.ReadTimeout
	if s.SendTimeout > 0 {
		up.WriteIdle = s.SendTimeout
	}
	var err error
	if head.Chunked {
		ex.bytesIn, err = h1.CopyChunked(up.W, br, s.MaxBodySize)
		if errors.Is(err, h1.ErrTooLarge) {
			err = upstream.ErrBodyTooLarge
		}
	} else if m := ex.mirror; m != nil && m.body != nil {
		m.body = m.body[:0] // a retry sends it again
		ex.bytesIn, err = io.CopyN(up.W, io.TeeReader(br, (*mirrorBody)(m)), head.ContentLength)
	} else {
		ex.bytesIn, err = io.CopyN(up.W, br, head.ContentLength)
	}
	if err == nil {
		err = up.W.Flush()
	}
	up.WriteIdle = 0
	up.SetWriteDeadline(time.Time{})
	if err == nil {
		return nil
	}
	if up.WriteErr() == nil {
		up.Close()
		return &h1Failure{Failure: upstream.Failure{Err: err, Body: err}, sentBody: true}
	}
	if e.readResponseHead(ex, up, time.Now().Add(h1EarlyAnswerWait)) == nil {
		ex.bodyCut = true
		return nil
	}
	up.Close()
	return &h1Failure{Failure: upstream.Failure{Err: up.WriteErr()}, sentBody: true}
}

// h1WatchAfter is how long the engine waits for a response head before
// it starts watching the client connection too, to give up on the
// endpoint when the client goes away (as net/http's background read
// does for every request, at the cost of a goroutine and a wake-up).
const h1WatchAfter = 50 * time.Millisecond

// h1EarlyAnswerWait bounds the look for an answer an endpoint sent
// before it stopped reading the request body.
const h1EarlyAnswerWait = 100 * time.Millisecond

// waitResponseHead is readResponseHead within the route's read timeout;
// when the endpoint is slow, it watches the client meanwhile and gives up
// if the client leaves.
func (e *h1Engine) waitResponseHead(ex *h1Exchange, up *upstream.Conn) error {
	cc, br := ex.cc, ex.cc.br
	d := ex.x.Settings.ReadTimeout
	yieldBeforeRead()
	deadline := time.Now().Add(d)
	if !ex.until.IsZero() && ex.until.Before(deadline) {
		deadline, d = ex.until, time.Until(ex.until)
	}
	if d <= h1WatchAfter {
		return e.readResponseHead(ex, up, deadline)
	}
	err := e.readResponseHead(ex, up, time.Now().Add(h1WatchAfter))
	if err == nil || !upstream.IsTimeout(err) {
		return err
	}
	// Slow: watch the client until the head comes, by waiting for a byte
	// past what br holds (the request's own head, pipelined requests). A
	// read on the client may move the bytes of the request's head in br:
	// from here on its slices are not read again (headStale).
	ahead := br.Buffered() + 1
	if ahead > br.Size() {
		return e.readResponseHead(ex, up, deadline) // br is full: nothing to watch with
	}
	ex.headStale = true
	_ = cc.SetReadDeadline(time.Time{}) // the head's deadline must not end the watch
	// The endpoint's deadline is set before the watch starts: a watch
	// that stops the wait (below) must not be undone by setting it.
	up.SetReadDeadline(deadline)
	var gone atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := br.Peek(ahead); err != nil && !upstream.IsTimeout(err) {
			gone.Store(true)
			up.SetReadDeadline(time.Now()) // stop the wait for the endpoint
		}
	}()
	err = e.nextResponseHead(ex, up)
	_ = cc.SetReadDeadline(time.Now()) // stop the watch
	<-done
	_ = cc.SetReadDeadline(time.Time{})
	if gone.Load() {
		return upstream.ErrClientGone
	}
	return err
}

// readResponseHead waits for the final response head until deadline,
// relaying nothing yet: it is left parsed in ex.resp and buffered in up
// (its length in ex.upHead). 1xx interim responses come one at a time,
// each passed on by relay.
func (e *h1Engine) readResponseHead(ex *h1Exchange, up *upstream.Conn, deadline time.Time) error {
	up.SetReadDeadline(deadline)
	return e.nextResponseHead(ex, up)
}

// nextResponseHead is readResponseHead within the deadline already set.
func (e *h1Engine) nextResponseHead(ex *h1Exchange, up *upstream.Conn) error {
	raw, err := peekHead(up.R, 64<<10)
	if err != nil {
		if errors.Is(err, errHandoff) {
			return errResponseHead
		}
		return err
	}
	if !h1.ParseResp(raw, ex.x.In.Method() == http.MethodHead, ex.resp) {
		return errResponseHead
	}
	ex.upHead = len(raw)
	return nil
}

// errResponseHead is a response head the engine cannot relay: too large,
// malformed, or a protocol switch no request asked for.
var errResponseHead = errors.New("malformed or oversized response head from the endpoint")

// relay writes the response whose head ex.resp holds (and up buffers) to
// the client, and its body, and puts up back in the pool when the
// exchange left it clean. 1xx interim responses are passed on first.
func (e *h1Engine) relay(ex *h1Exchange, pools *upstream.Pools, up *upstream.Conn) (keep bool) {
	x, resp, bw := ex.x, ex.resp, ex.cc.bw
	for resp.Status < 200 {
		// An interim response (103 Early Hints, an unasked-for 100):
		// passed on as it is, then the next head.
		e.writeResponseHead(ex, true)
		_, _ = up.R.Discard(ex.upHead)
		if err := bw.Flush(); err != nil {
			up.Close()
			ex.code = StatusClientClosedRequest
			return false
		}
		if err := e.waitResponseHead(ex, up); err != nil {
			// Too late for a clean answer: the client saw a 1xx.
			up.Close()
			e.cluster.UpstreamError(err)
			ex.code = http.StatusBadGateway
			return false
		}
	}
	ex.code = resp.Status
	// A server shutting down says so on the response, as net/http does.
	keep = !ex.head.CloseConn && resp.Body != h1.BodyClose && !e.closing.Load() && !ex.bodyCut
	if ex.bodyCut {
		resp.CloseConn = true // the endpoint's side is broken too
	}
	e.writeResponseHead(ex, keep)
	_, _ = up.R.Discard(ex.upHead)

	idle := x.Settings.IdleTimeout
	up.Until = ex.until
	switch {
	case idle > 0:
		up.ReadIdle = idle
	case !ex.until.IsZero():
		up.SetReadDeadline(ex.until) // the body too must be in by then
	case resp.Body == h1.BodyChunked || resp.Body == h1.BodyClose ||
		resp.Body == h1.BodyLength && int64(up.R.Buffered()) < resp.ContentLength:
		// More is read: the response header deadline no longer applies.
		// (A body that is all buffered already needs no read, and the
		// next use of the connection sets a deadline of its own.)
		up.SetReadDeadline(time.Time{})
	}
	var err error
	var n int64
	switch resp.Body {
	case h1.BodyLength:
		n, err = copyBody(ex, up, resp.ContentLength)
	case h1.BodyChunked:
		n, err = h1.CopyChunked(bw, up.R, 0)
	case h1.BodyClose:
		n, err = copyBody(ex, up, -1)
		resp.CloseConn = true
	}
	ex.bytesOut = n
	up.ReadIdle, up.Until = 0, time.Time{}
	if err != nil {
		up.Close()
		rerr := up.ReadErr()
		if rerr != nil && upstream.IsTimeout(rerr) && !ex.until.IsZero() && !time.Now().Before(ex.until) {
			e.cluster.DeadlinePassed(x.Backend, ex.ep.Address)
		} else if rerr != nil && upstream.IsTimeout(rerr) {
			// The endpoint went silent past the idle timeout: the
			// response is cut, which the client sees as a closed
			// connection short of the body's end.
			e.cluster.IdleTimedOut(x.Backend, ex.ep.Address, idle)
		}
		return false
	}
	if resp.CloseConn || pools.Removed() {
		up.Close()
	} else {
		pools.PutConn(up)
	}
	return keep
}

// copyBody relays n bytes of body (n < 0: until EOF) from up to the
// client, flushing what it has whenever up has nothing buffered, so that
// a stream reaches the client as it is produced.
func copyBody(ex *h1Exchange, up *upstream.Conn, n int64) (int64, error) {
	bw := ex.cc.bw
	var done int64
	for n < 0 || done < n {
		if up.R.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return done, err
			}
			if _, err := up.R.Peek(1); err != nil {
				if n < 0 && errors.Is(err, io.EOF) {
					return done, nil
				}
				return done, h1.NoEOF(err)
			}
		}
		chunk := up.R.Buffered()
		if n >= 0 {
			chunk = int(min(int64(chunk), n-done))
		}
		b, _ := up.R.Peek(chunk)
		w, err := bw.Write(b)
		_, _ = up.R.Discard(w)
		done += int64(w)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
