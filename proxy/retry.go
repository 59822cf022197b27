package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/route"
)

// retryTransport makes the attempts of a request: it sends the request to
// the endpoint ServeHTTP picked, records the outcome in the passive health
// tracker, and when the attempt could not reach the endpoint and sending
// the request again is safe, sends it to another endpoint of the same
// backend, up to the backend's retry budget. It is the ReverseProxy's
// Transport, so a retry happens before anything of a response reaches the
// client: the client sees the last attempt only.
//
// An attempt that succeeds costs a context lookup and one atomic load
// (Health.Success with no endpoint in trouble); everything else here runs
// only for failed attempts.
type retryTransport struct {
	h    *Handler
	next http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	if st == nil {
		return t.next.RoundTrip(req)
	}
	h := t.h
	budget := st.backend.RetryBudget()
	for {
		resp, err := t.next.RoundTrip(req)
		if err == nil {
			h.health.Success(st.endpoint.Address)
			h.limitIdle(st, resp)
			return resp, nil
		}
		if req.Context().Err() != nil || st.bodyErr.Load() != nil {
			return nil, err // the client's doing, not the endpoint's
		}
		h.endpointFailed(req, st)
		if budget <= 0 {
			return nil, err
		}
		next := h.retry(req, st, err)
		if next == nil {
			return nil, err
		}
		budget--
		// The failed attempt counts as an upstream error; the last one is
		// counted by proxyError.
		h.metrics.upstreamError(err)
		h.metrics.Retried()
		if ce := h.log.Check(zap.DebugLevel, "retrying on another endpoint"); ce != nil {
			ce.Write(zap.String("backend", st.backend.Key), zap.String("upstream", st.tried[len(st.tried)-1]),
				zap.String("next", st.endpoint.Address), zap.Error(err))
		}
		req = next
	}
}

// endpointFailed records a failed attempt to reach the current endpoint
// in the passive health tracker, and logs an ejection.
func (h *Handler) endpointFailed(req *http.Request, st *reqState) {
	h.endpointFailedAt(st.backend, st.endpoint.Address, req.Host)
}

// endpointFailedAt records a failed attempt to reach addr, an endpoint of
// be, for a request to host.
func (h *Handler) endpointFailedAt(be *route.Backend, addr, host string) {
	d := h.health.Failure(addr)
	if d == 0 {
		return
	}
	if ce := h.log.Check(zap.WarnLevel, "endpoint ejected after consecutive failures"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", addr),
			zap.String("host", host), zap.Duration("ejected_for", d))
	}
}

// retry returns the request that sends req again to another endpoint of
// its backend, or nil when that is not possible or not safe. Safe means
// the endpoint cannot have acted on req, or acting twice does no harm,
// and the body can be sent again:
//
//   - the attempt failed before any response byte, by a failure to
//     connect (nothing was sent) or by a connection refused, reset or
//     closed by the endpoint (something may have been);
//   - after a reset, the method is idempotent (RFC 9110 §9.2.2: GET, HEAD,
//     OPTIONS, TRACE, PUT, DELETE) or the request carries an
//     Idempotency-Key, or it has a body of which nothing was sent (the
//     endpoint got an incomplete request, which it cannot have served);
//   - the body, if any, was never read: it is not buffered, so a body
//     partly sent cannot be sent again.
//
// A response header timeout is never retried: the endpoint got the request
// and is slow, and a second endpoint would get the same load.
//
// retry moves the request's state to the new endpoint: its in-flight
// count, the endpoint the access log and metrics name, and the body.
func (h *Handler) retry(req *http.Request, st *reqState, err error) *http.Request {
	dial, ok := retryable(err)
	if !ok {
		return nil
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if !dial && !idempotent(req) && !hasBody {
		return nil
	}
	if hasBody && st.bodyOwner.Load() != st.attempt<<1 {
		return nil // some of it was read
	}
	tried := slices.Concat(st.tried, []string{st.endpoint.Address})
	ep := h.balancers.PickRetry(st.backend, req, tried)
	if ep == nil {
		return nil // every endpoint was tried
	}
	next := req.WithContext(req.Context()) // a shallow copy
	u := *req.URL
	u.Host = ep.Address
	next.URL = &u
	if hasBody {
		// Take the body over; this fails if the attempt given up started
		// reading it in the meantime.
		if !st.bodyOwner.CompareAndSwap(st.attempt<<1, (st.attempt+1)<<1) {
			return nil
		}
		next.Body = &reqBody{ReadCloser: st.body.ReadCloser, st: st, attempt: st.attempt + 1}
	}
	st.attempt++
	st.tried = tried
	st.counter.Release()
	st.counter = h.inflight.Acquire(ep.Address)
	st.endpoint = ep
	return next
}

// retryable reports whether err, from an attempt to reach an endpoint,
// may be retried elsewhere, and whether it is a failure to connect.
func retryable(err error) (dial, ok bool) {
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// A keep-alive connection the endpoint closed as the request
		// went out; net/http retries those itself when it can, and
		// returns this undecorated sentinel, unexported, when it cannot.
		err.Error() == "http: server closed idle connection":
		return false, true
	}
	return false, false
}

// idempotent reports whether sending r twice has the effect of sending it
// once: its method says so (RFC 9110 §9.2.2), or it carries an
// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header).
func idempotent(r *http.Request) bool {
	if idempotentMethod(r.Method) {
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	return ok
}

// idempotentMethod reports the methods RFC 9110 §9.2.2 defines as
// idempotent.
func idempotentMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// limitIdle makes resp's body end with an error when the endpoint stays
// silent for longer than the backend's IdleTimeout while the proxy waits
// for more of it. Protocol switches (WebSockets) are tunnels, not bodies,
// and are left alone.
func (h *Handler) limitIdle(st *reqState, resp *http.Response) {
	d := time.Duration(st.backend.IdleTimeout)
	if d <= 0 || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	resp.Body = &idleBody{ReadCloser: resp.Body, timeout: d, h: h, backend: st.backend, upstream: st.endpoint.Address}
}

// errIdleTimeout is the error reading a response body whose endpoint was
// silent for longer than the backend's IdleTimeout. It is a net.Error
// whose Timeout is true, so it is counted as an upstream timeout.
type errIdleTimeout struct{}

func (errIdleTimeout) Error() string   { return "upstream idle timeout reading the response body" }
func (errIdleTimeout) Timeout() bool   { return true }
func (errIdleTimeout) Temporary() bool { return false }

var _ net.Error = errIdleTimeout{}

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
	h        *Handler
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
		err = errIdleTimeout{}
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
	b.h.idleTimedOut(b.backend, b.upstream, b.timeout)
	_ = b.ReadCloser.Close()
}

// idleTimedOut counts and logs a response cut because the endpoint at
// addr stayed silent for longer than its backend's idle timeout d.
func (h *Handler) idleTimedOut(be *route.Backend, addr string, d time.Duration) {
	h.metrics.upstreamError(errIdleTimeout{})
	if ce := h.log.Check(zap.WarnLevel, "upstream idle timeout, response cut"); ce != nil {
		ce.Write(zap.String("backend", be.Key), zap.String("upstream", addr), zap.Duration("idle_timeout", d))
	}
}
