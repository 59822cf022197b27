package proxy

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// retryTransport makes the attempts of a request of the net/http adapter:
// it sends the request to the endpoint the pipeline picked, records the
// outcome in the passive health tracker, and when the attempt could not
// reach the endpoint and the cluster's rules say sending it again is safe
// (upstream.Retryable), sends it to another endpoint of the same backend,
// up to the route's retry budget. It is the ReverseProxy's Transport, so a
// retry happens before anything of a response reaches the client: the
// client sees the last attempt only.
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
	c := t.h.cluster
	x := st.x
	budget := x.Settings.Retries
	var first time.Time // for the retry timeout only: no clock otherwise
	if x.Settings.RetryTimeout > 0 {
		first = time.Now()
	}
	for {
		var began time.Time
		if x.Backend.Balancer == balancer.PolicyEWMA {
			began = time.Now() // only the latency balancer needs the clock
		}
		try, cancel := attemptRequest(req, &x.Settings)
		resp, err := t.next.RoundTrip(try)
		if err != nil && cancel != nil {
			cancel()
		}
		if err == nil {
			if cancel != nil {
				// The attempt's deadline holds for its body too.
				resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			}
			c.Succeeded(st.endpoint.Address)
			if !began.IsZero() {
				st.counter.Observe(time.Since(began))
			}
			if next := t.intercept(req, resp, st); next != nil {
				req = next
				continue
			}
			if d := x.Settings.IdleTimeout; d > 0 && resp.StatusCode != http.StatusSwitchingProtocols &&
				resp.Body != nil && resp.Body != http.NoBody {
				// Protocol switches (WebSockets) are tunnels, not
				// bodies, and are left alone.
				resp.Body = c.LimitIdle(resp.Body, d, x.Backend, st.endpoint.Address)
			}
			if x.RespRewrite != nil {
				rewriteResponseHeader(resp.Header, x.RespRewrite)
			}
			return resp, nil
		}
		if req.Context().Err() != nil || st.bodyErr.Load() != nil {
			return nil, err // the client's doing, not the endpoint's
		}
		c.Failed(x.Backend, st.endpoint.Address, req.Host)
		if budget <= 0 || !first.IsZero() && time.Since(first) >= x.Settings.RetryTimeout || x.Settings.Expired() {
			return nil, err
		}
		next := t.retry(req, st, err)
		if next == nil {
			return nil, err
		}
		budget--
		req = next
	}
}

// intercept, when the route sends the status of resp to its error backend
// (custom-http-errors) and req had no body, drops resp and returns the
// request to the error backend's endpoint; nil otherwise.
func (t *retryTransport) intercept(req *http.Request, resp *http.Response, st *reqState) *http.Request {
	if req.Body != nil && req.Body != http.NoBody {
		return nil
	}
	ep := t.h.pipeline.Intercept(st.x, resp.StatusCode)
	if ep == nil {
		return nil
	}
	resp.Body.Close()
	if st.pools != nil {
		st.pools.End()
		st.pools = nil
	}
	st.counter.Release()
	st.counter = t.h.cluster.Acquire(ep.Address)
	st.endpoint, st.tried = ep, nil
	next := req.Clone(req.Context())
	next.URL.Scheme = upstream.Scheme(st.x.Backend.Protocol)
	next.URL.Host = ep.Address
	next.URL.Path, next.URL.RawPath, next.URL.RawQuery = "/", "", ""
	next.Host = st.x.In.Host() // the client's, as nginx's $best_http_host
	for _, ed := range st.x.Req.All() {
		if ed.Op == pipeline.Set { // the X-Code fields; Set again is harmless
			next.Header[ed.Name] = []string{ed.Value}
		}
	}
	return next
}

// retry returns the request that sends req again to another endpoint of
// its backend, or nil when that is not possible or not safe
// (upstream.Retryable). It moves the request's state to the new endpoint:
// its in-flight count, the endpoint the access log and metrics name, and
// the body.
func (t *retryTransport) retry(req *http.Request, st *reqState, err error) *http.Request {
	hasBody := req.Body != nil && req.Body != http.NoBody
	_, hasKey := req.Header["Idempotency-Key"]
	bodyRead := hasBody && st.bodyOwner.Load() != st.attempt<<1
	if !upstream.Retryable(err, upstream.Idempotent(req.Method, hasKey), hasBody, bodyRead) {
		return nil
	}
	tried := slices.Concat(st.tried, []string{st.endpoint.Address})
	ep := t.h.cluster.Retry(st.x.Backend, st.x.Key, tried, err)
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
	st.counter = t.h.cluster.Acquire(ep.Address)
	st.endpoint = ep
	return next
}

// timedTransport measures each attempt to reach an endpoint, for the
// upstream_response_seconds histogram and the access log.
type timedTransport struct{ next http.RoundTripper }

func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	if st == nil {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	st.upstream = time.Since(start)
	st.attempted = true
	return resp, err
}

// poolTransport sends a request to the endpoint its URL names, through
// the endpoint's pool for the protocol and settings of its forward. The
// request is counted as using the endpoint until the adapter ends it
// (reqState.done), or until RoundTrip returns when it fails.
type poolTransport struct{ c *upstream.Cluster }

func (t poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req)
	kind, settings := upstream.KindH1, t.c.Defaults()
	var bt *route.BackendTLS
	if st != nil {
		kind, settings, bt = upstream.KindOf(st.x.Backend.Protocol), st.x.Settings, st.x.Backend.TLS
	}
	ep := t.c.Pools(req.URL.Host)
	tr := ep.Transport(kind, settings, bt)
	ep.Begin()
	resp, err := tr.RoundTrip(req)
	if err != nil || st == nil {
		ep.End()
		return resp, err
	}
	st.pools = ep
	return resp, nil
}

// bufferSize is the size of the buffers response bodies are copied with,
// as ReverseProxy would allocate per request without a pool.
const bufferSize = 32 << 10

var buffers = sync.Pool{New: func() any { return new([bufferSize]byte) }}

// bufferPool lends ReverseProxy its copy buffers. It pools array pointers,
// which fit in an interface without an allocation, unlike slices.
type bufferPool struct{}

func (bufferPool) Get() []byte { return buffers.Get().(*[bufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if len(b) == bufferSize {
		buffers.Put((*[bufferSize]byte)(b))
	}
}

// rewriteResponseHeader rewrites the Location, Refresh and Set-Cookie
// fields of an endpoint's response by rw (pipeline.RewriteResponseField).
func rewriteResponseHeader(h http.Header, rw *route.ResponseRewrite) {
	for _, name := range [...]string{"Location", "Refresh", "Set-Cookie"} {
		for i, v := range h[name] {
			if nv, ok := pipeline.RewriteResponseField(rw, name, v); ok {
				h[name][i] = nv
			}
		}
	}
}

// attemptRequest returns req bounded by the end of an attempt starting
// now (upstream.Settings.AttemptEnd: the route's request and attempt
// timeouts), and the cancel that releases its context; req itself and a
// nil cancel when the route has neither.
func attemptRequest(req *http.Request, s *upstream.Settings) (*http.Request, context.CancelFunc) {
	if s.Deadline.IsZero() && s.AttemptTimeout == 0 {
		return req, nil
	}
	ctx, cancel := context.WithDeadline(req.Context(), s.AttemptEnd(time.Now()))
	return req.WithContext(ctx), cancel
}

// cancelOnClose is a response body whose attempt's context is released
// when it is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
