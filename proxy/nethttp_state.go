package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/proxy/balancer"
	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// observation is one request of the net/http adapter: the ResponseWriter
// it is answered through, which records the status and the bytes sent and
// applies the response edits, with the request's head, its Exchange and
// the state of its forward, so that a request costs one allocation for
// all of them.
type observation struct {
	http.ResponseWriter
	req      *http.Request
	start    time.Time // zero when nothing observes requests
	code     int       // the status sent (101 for a tunnel); 0 until then
	bytesOut int64     // response body bytes written
	edited   bool      // the response edits were applied
	respVals [2]string // values of the response edits' Set fields
	head     httpHead
	x        pipeline.Exchange
	st       reqState
}

// begin starts serving r, answered through w.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request) *observation {
	ob := &observation{ResponseWriter: w, req: r}
	ob.head.r = r
	if h.sink.On() {
		ob.start = time.Now()
	}
	return ob
}

// end records a request that was answered.
func (h *Handler) end(ob *observation) {
	ob.x.Done()
	if ob.code == 0 {
		// Nothing was written: net/http sends a 200 when the handler
		// returns, with the headers as they are now.
		ob.applyEdits(http.StatusOK)
	}
	if !h.sink.On() {
		return
	}
	r := ob.req
	code := ob.code
	if code == 0 {
		code = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	rec := observe.Record{
		Start:    ob.start,
		Duration: time.Since(ob.start),
		ID:       ob.x.ID,
		Client:   ob.x.Client,
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		Proto:    r.Proto,
		Status:   code,
		BytesIn:  ob.st.bodyBytes.Load(),
		BytesOut: ob.bytesOut,
		Route:    ob.x.Route,
		Backend:  ob.x.Backend,
	}
	if rec.Client == "" {
		rec.Client = r.RemoteAddr
	}
	if ep := ob.st.endpoint; ep != nil {
		rec.Upstream = ep.Address
	}
	if ob.st.attempted {
		rec.Attempted, rec.UpstreamDuration = true, ob.st.upstream
	}
	h.sink.Done(&rec)
}

// applyEdits applies the response edits (X-Request-Id, HSTS) to the
// header about to be sent, once.
func (o *observation) applyEdits(status int) {
	if !o.edited {
		o.edited = true
		applyEdits(o.Header(), &o.x.Resp, o.respVals[:], status)
	}
}

// noteStatus records code as the status of a request answered through w
// when nothing is sent (499: the client went away).
func noteStatus(w http.ResponseWriter, code int) {
	if ob, ok := w.(*observation); ok && ob.code == 0 {
		ob.code = code
	}
}

// WriteHeader applies the response edits and records the final status.
func (o *observation) WriteHeader(code int) {
	// 1xx responses other than 101 may come first, from the Transport's
	// goroutine (Got1xxResponse); they are not the status, and carry
	// what the endpoint sent.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		if o.code == 0 {
			o.code = code
		}
		o.applyEdits(code)
	}
	o.ResponseWriter.WriteHeader(code)
}

// Write writes a response body, counting its bytes.
func (o *observation) Write(p []byte) (int, error) {
	if o.code == 0 {
		o.WriteHeader(http.StatusOK)
	}
	n, err := o.ResponseWriter.Write(p)
	o.bytesOut += int64(n)
	return n, err
}

// Flush sends what was written so far.
func (o *observation) Flush() {
	_ = http.NewResponseController(o.ResponseWriter).Flush()
}

// Hijack hands the connection over for a protocol switch (WebSocket): the
// status is 101, and the response header, which the ReverseProxy writes
// itself, carries the response edits.
func (o *observation) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	o.applyEdits(http.StatusSwitchingProtocols)
	c, brw, err := http.NewResponseController(o.ResponseWriter).Hijack()
	if err == nil && o.code == 0 {
		o.code = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap returns the ResponseWriter underneath, for
// http.ResponseController.
func (o *observation) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// reqState is what one forwarded request carries from ServeHTTP to
// Rewrite, the Transport and the ErrorHandler. It is its own context (the
// request's, plus itself as a value) so that passing it costs no
// allocation beyond the observation it lives in.
type reqState struct {
	context.Context
	x        *pipeline.Exchange    // the decision
	endpoint *route.Endpoint       // of the current attempt
	counter  *balancer.Counter     // in-flight count of endpoint
	pools    *upstream.Pools       // whose connection the response came on; nil: none yet
	body     reqBody               // the client's body, as the first attempt reads it
	bodyErr  atomic.Pointer[error] // the first error reading the client's body
	reqVals  [8]string             // values of the request edits' Set fields

	// bodyOwner says which attempt may read the client's body, and
	// whether it has: attempt<<1, plus 1 once a read started. A retry
	// takes the body over only from an attempt that never read it.
	bodyOwner atomic.Int32
	attempt   int32    // the current attempt, from 0
	tried     []string // addresses attempted before the current one

	bodyBytes atomic.Int64  // bytes of the client's body read (the Transport reads it)
	upstream  time.Duration // how long the attempt to the endpoint took
	attempted bool          // upstream is set: the endpoint was tried
}

type stateKey struct{}

// Value returns the state itself for stateKey and defers to the request's
// context otherwise.
func (s *reqState) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return s
	}
	return s.Context.Value(key)
}

// done ends the request's use of its endpoint.
func (s *reqState) done() {
	s.counter.Release()
	if s.pools != nil {
		s.pools.End()
	}
}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// reqBody is the client's request body as one attempt reads it. It records
// the first error reading it, so that the ErrorHandler can blame the
// client (400, 499) rather than the backend, counts the bytes, enforces
// the route's body limit, and makes sure that only one attempt ever
// reads it. The Transport reads it from its own goroutine.
type reqBody struct {
	io.ReadCloser
	st      *reqState
	attempt int32
}

// errBodyMoved is what an attempt that was given up reads from the body
// that a retry took over.
var errBodyMoved = errors.New("request body taken over by a retry")

func (b *reqBody) Read(p []byte) (int, error) {
	st := b.st
	if !st.claimBody(b.attempt) {
		return 0, errBodyMoved
	}
	limit := st.x.Settings.MaxBodySize
	if limit > 0 {
		// Read at most one byte past the limit, to see whether there is
		// more.
		if left := limit - st.bodyBytes.Load(); int64(len(p)) > left+1 {
			p = p[:left+1]
		}
	}
	n, err := b.ReadCloser.Read(p)
	total := st.bodyBytes.Add(int64(n))
	if limit > 0 && total > limit {
		st.bodyBytes.Add(limit - total)
		n -= int(total - limit)
		err = upstream.ErrBodyTooLarge
	}
	if err != nil && err != io.EOF {
		e := err // a copy, so that only a failing Read allocates
		st.bodyErr.CompareAndSwap(nil, &e)
	}
	return n, err
}

// Close closes the client's body if this attempt read from it. A body
// no attempt read stays open for a retry; net/http closes it when the
// handler returns.
func (b *reqBody) Close() error {
	if b.st.bodyOwner.Load() == b.attempt<<1|1 {
		return b.ReadCloser.Close()
	}
	return nil
}

// claimBody reports whether attempt may read the body, marking it read.
func (s *reqState) claimBody(attempt int32) bool {
	mine := attempt << 1
	for {
		switch o := s.bodyOwner.Load(); o {
		case mine | 1:
			return true
		case mine:
			if s.bodyOwner.CompareAndSwap(o, mine|1) {
				return true
			}
		default:
			return false
		}
	}
}
