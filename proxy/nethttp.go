package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/upstream"
)

// netHTTP is the net/http adapter of one listener: net/http's HTTP/1.1
// and HTTP/2 servers read the requests, the pipeline decides them, and
// this only carries the decision out: a local answer written through the
// ResponseWriter, or a forward through the shared httputil.ReverseProxy
// whose Rewrite applies the request edits and whose Transport
// (retryTransport) sends the attempts through the cluster's pools.
type netHTTP struct {
	h *Handler
	l *pipeline.Listener
}

func (a netHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := a.h
	ob := h.begin(w, r)
	defer h.end(ob)
	x := &ob.x
	x.In = &ob.head
	x.Remote = r.RemoteAddr
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		x.PeerIP = ip
	}
	if r.TLS != nil {
		x.Secure, x.ServerName, x.PeerCertificates = true, r.TLS.ServerName, r.TLS.PeerCertificates
	}
	x.Proto, x.ProtoMajor = r.Proto, r.ProtoMajor
	a.l.Decide(x)
	if x.Reply.Status != 0 {
		writeReply(ob, r, &x.Reply)
		return
	}
	var m *mirrorCopy
	if x.Mirror != nil {
		m = mirrorOfRequest(x.Mirror, r)
	}
	h.forward(ob, r)
	if m != nil {
		h.mirror.send(m)
	}
}

// mirrorOfRequest returns the copy of r for to; a body the copy carries is
// read first (it is small: mirrorMaxBody) and r's replaced by it.
func mirrorOfRequest(to *pipeline.MirrorTo, r *http.Request) *mirrorCopy {
	c := &mirrorCopy{to: to, method: r.Method, header: r.Header.Clone()}
	n := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody {
		n = 0
	}
	keep, lost := wantBody(to, n)
	c.bodyLost = lost
	if keep {
		b, err := io.ReadAll(io.LimitReader(r.Body, n+1))
		if err != nil || int64(len(b)) != n {
			c.bodyLost = true
		}
		c.body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return c
}

// forward sends r to the endpoint the pipeline picked: the request is
// counted in flight to it and handed to the ReverseProxy, whose Transport
// may move it to another one (retryTransport).
func (h *Handler) forward(ob *observation, r *http.Request) {
	x := &ob.x
	st := &ob.st
	st.Context, st.x, st.endpoint = r.Context(), x, x.Endpoint
	st.counter = h.cluster.Acquire(x.Endpoint.Address)
	defer st.done()
	out := r.WithContext(st)
	if r.Body != nil && r.Body != http.NoBody {
		st.body = reqBody{ReadCloser: r.Body, st: st}
		out.Body = &st.body
	}
	h.proxy.ServeHTTP(ob, out)
}

// httpHead is an *http.Request as the pipeline reads it.
type httpHead struct{ r *http.Request }

var _ pipeline.Head = (*httpHead)(nil)

func (h *httpHead) Method() string   { return h.r.Method }
func (h *httpHead) Host() string     { return h.r.Host }
func (h *httpHead) Path() string     { return h.r.URL.Path }
func (h *httpHead) RawQuery() string { return h.r.URL.RawQuery }

func (h *httpHead) RequestURI() string {
	if u := h.r.RequestURI; u == "*" || strings.HasPrefix(u, "/") {
		return u
	}
	// An absolute-form request-target: its path and query only.
	return h.r.URL.RequestURI()
}

func (h *httpHead) Header(name string) (string, int) {
	v := h.r.Header[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

func (h *httpHead) Values(name string, f func(string) bool) {
	for _, v := range h.r.Header[name] {
		if !f(v) {
			return
		}
	}
}

func (h *httpHead) Fields(f func(name, value string) bool) {
	for name, vs := range h.r.Header {
		for _, v := range vs {
			if !f(name, v) {
				return
			}
		}
	}
}

func (h *httpHead) ContentLength() int64 {
	if h.r.Body == nil || h.r.Body == http.NoBody {
		return 0
	}
	if h.r.ContentLength == 0 {
		return -1 // a body of unknown length (HTTP/2 without content-length)
	}
	return h.r.ContentLength
}

// writeReply writes the pipeline's local answer r.
func writeReply(w http.ResponseWriter, req *http.Request, r *pipeline.Reply) {
	h := w.Header()
	for _, f := range r.Fields {
		switch {
		case !f.Applies(r.Status) || f.Op == pipeline.Del:
		case f.Op == pipeline.Set:
			h[f.Name] = []string{f.Value}
		default:
			h[f.Name] = append(h[f.Name], f.Value)
		}
	}
	if r.Close {
		h["Connection"] = []string{"close"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(r.Body))}
	w.WriteHeader(r.Status)
	if req.Method != http.MethodHead && r.Body != "" {
		_, _ = io.WriteString(w, r.Body)
	}
}

// applyEdits applies e to h, taking the values of its Set edits from
// vals as long as it lasts (so that the usual few cost no allocation).
func applyEdits(h http.Header, e *pipeline.Edits, vals []string, status int) {
	for _, ed := range e.All() {
		if !ed.Applies(status) {
			continue
		}
		switch ed.Op {
		case pipeline.Set:
			if len(vals) > 0 {
				vals[0] = ed.Value
				h[ed.Name] = vals[:1:1]
				vals = vals[1:]
			} else {
				h[ed.Name] = []string{ed.Value}
			}
		case pipeline.Add, pipeline.AddOK:
			h[ed.Name] = append(h[ed.Name], ed.Value)
		case pipeline.Del:
			delete(h, ed.Name)
		}
	}
}

// forwardedFields are the fields ReverseProxy removes from the outgoing
// request before Rewrite; the request edits decide what is sent.
var forwardedFields = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

// rewrite aims the outgoing request at the attempt's endpoint and applies
// the request edits. It keeps the client's Host: name-based backends route
// on it (RFC 9110 §7.2). The forwarding fields ReverseProxy removed are
// put back as the client sent them first, so that the edits (the
// forwarding policy's) act on the head as it came, as on every engine.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	st := stateOf(in)
	out.URL.Scheme = upstream.Scheme(st.x.Backend.Protocol)
	out.URL.Host = st.endpoint.Address
	out.Host = in.Host
	if h := st.x.UpstreamHost; h != "" {
		out.Host = h
	}
	if t := st.x.Target; t != "" {
		// The target was escaped by the rewrite; keep it as it is.
		path, query, _ := strings.Cut(t, "?")
		out.URL.Path, out.URL.RawPath, out.URL.RawQuery = path, path, query
		if p, err := url.PathUnescape(path); err == nil {
			out.URL.Path = p
		}
	}
	for _, name := range forwardedFields {
		if v := in.Header[name]; len(v) > 0 {
			out.Header[name] = slices.Clone(v)
		}
	}
	applyEdits(out.Header, &st.x.Req, st.reqVals[:], 0)
}

// newReverseProxy returns the ReverseProxy every request of the net/http
// adapter goes through: what differs per request (the endpoint, the
// edits) travels in the request's context (reqState).
func (h *Handler) newReverseProxy(custom http.RoundTripper) *httputil.ReverseProxy {
	var rt http.RoundTripper = poolTransport{c: h.cluster}
	if custom != nil {
		rt = custom
	}
	if h.sink.On() {
		rt = timedTransport{next: rt}
	}
	rt = &retryTransport{h: h, next: rt}
	return &httputil.ReverseProxy{
		Rewrite:      h.rewrite,
		Transport:    rt,
		ErrorHandler: h.proxyError,
		ErrorLog:     newStdLog(h.log),
		BufferPool:   bufferPool{},
		// FlushInterval 0: ReverseProxy already flushes every write of a
		// response without a Content-Length (chunked, or read to EOF) and
		// of text/event-stream, which is what streams; responses of known
		// length are written in 4 KiB blocks without a timer per request.
	}
}
