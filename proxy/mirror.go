package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/upstream"
)

// The mirror sender: copies of the requests of routes with
// route.Mirror (ingress-nginx's mirror-target) go out from here, after the
// engine has forwarded the original, on goroutines of their own, so that
// a slow or dead mirror never slows a client (where nginx's mirror holds
// the client's next request until the copy is answered). The copies in
// flight are bounded; past the bound a copy is dropped, and so is one
// whose body the engine could not keep.

const (
	// mirrorsInFlight bounds the copies being sent at once.
	mirrorsInFlight = 256
	// mirrorMaxBody is the largest body a copy carries; a request with a
	// larger one (or a chunked one) is not copied when the body is wanted.
	mirrorMaxBody = 64 << 10
	// mirrorTimeout bounds a copy from start to end.
	mirrorTimeout = 10 * time.Second
)

type mirrorer struct {
	client  *http.Client
	cluster *upstream.Cluster // picks the endpoints of mirror backends
	slots   chan struct{}
	log     *zap.Logger
	sent    atomic.Int64 // copies answered (tests)
	dropped atomic.Int64 // copies not sent: too many in flight, a body not kept, a bad URL
}

func newMirrorer(log *zap.Logger, cluster *upstream.Cluster) *mirrorer {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: mirrorTimeout,
		DisableCompression:    true,
	}
	return &mirrorer{
		client:  &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		slots:   make(chan struct{}, mirrorsInFlight),
		log:     log,
		cluster: cluster,
	}
}

// mirrorCopy is what a copy is made of, taken from the request before it
// was forwarded.
type mirrorCopy struct {
	to     *pipeline.MirrorTo
	method string
	header http.Header
	body   []byte
	// bodyLost is set when the copy wanted the body and the engine could
	// not keep it (too large, chunked, cut).
	bodyLost bool
}

// wantBody reports whether the copy of a request with a body of length n
// (-1: chunked) carries it, and whether it is kept at all.
func wantBody(to *pipeline.MirrorTo, n int64) (keep, lost bool) {
	switch {
	case !to.Body || n == 0:
		return false, false
	case n < 0 || n > mirrorMaxBody:
		return false, true
	}
	return true, false
}

// send sends c, unless too many copies are in flight or its body was
// lost: to its URL, or to an endpoint of each of its backends.
func (m *mirrorer) send(c *mirrorCopy) {
	if c.bodyLost {
		m.dropped.Add(int64(max(len(c.to.Backends), 1)))
		return
	}
	if len(c.to.Backends) == 0 {
		m.sendTo(c, c.to.URL)
		return
	}
	for _, be := range c.to.Backends {
		ep := m.cluster.Pick(be, 0)
		if ep == nil {
			m.dropped.Add(1) // no endpoint, or a backendRef that did not resolve
			continue
		}
		m.sendTo(c, upstream.Scheme(be.Protocol)+"://"+ep.Address+c.to.URI)
	}
}

// sendTo sends c to target on a goroutine of its own, unless too many
// copies are in flight.
func (m *mirrorer) sendTo(c *mirrorCopy, target string) {
	select {
	case m.slots <- struct{}{}:
	default:
		m.dropped.Add(1)
		return
	}
	go func() {
		defer func() { <-m.slots }()
		if m.do(c, target) {
			m.sent.Add(1)
		} else {
			m.dropped.Add(1)
		}
	}()
}

func (m *mirrorer) do(c *mirrorCopy, target string) bool {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		m.log.Debug("mirror URL is not an absolute http(s) URL", zap.String("url", target))
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), mirrorTimeout)
	defer cancel()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), body)
	if err != nil {
		return false
	}
	for k, v := range c.header {
		if !mirrorSkips(k) {
			req.Header[k] = v
		}
	}
	req.Host = u.Host
	if c.to.Host != "" {
		req.Host = c.to.Host
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.log.Debug("mirror request failed", zap.String("url", target), zap.Error(err))
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return true
}

// mirrorSkips reports whether a field of the request is left out of its
// copy: the hop-by-hop ones and the framing, which the copy has its own.
func mirrorSkips(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host", "Expect":
		return true
	}
	return false
}
