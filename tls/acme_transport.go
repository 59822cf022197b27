package tls

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/crypto/acme/autocert"
)

// maxInspect bounds the ACME response bodies the gate reads to find
// validation errors; authorizations are a few hundred bytes.
const maxInspect = 64 << 10

// gate is the ACME client's transport. It refuses every request while
// canOrder reports false, which is what keeps a replica that is not the
// leader from ordering even when autocert decides to (a renewal timer, a
// race with a leadership change). It also logs why the CA rejected a
// validation: autocert retries with the next challenge type and then
// returns a generic error, dropping the CA's explanation.
type gate struct {
	base     http.RoundTripper
	canOrder func() bool
	log      *zap.Logger

	mu     sync.Mutex
	logged map[string]struct{} // authorization URLs already logged
}

// RoundTrip implements http.RoundTripper.
func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	if !g.canOrder() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, ErrNotLeader
	}
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	g.inspect(req, resp)
	return resp, nil
}

// authorization is the part of an RFC 8555 §7.1.4 authorization object the
// gate reads.
type authorization struct {
	Status     string `json:"status"`
	Identifier struct {
		Value string `json:"value"`
	} `json:"identifier"`
	Challenges []struct {
		Type  string `json:"type"`
		Error *struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		} `json:"error"`
	} `json:"challenges"`
}

// inspect logs the challenge errors of an invalid authorization in resp,
// once per authorization, and leaves resp's body as it found it.
func (g *gate) inspect(req *http.Request, resp *http.Response) {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "application/json" || resp.Body == nil || resp.ContentLength > maxInspect {
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInspect+1))
	if err != nil || len(body) > maxInspect {
		// Hand the client what was read followed by what was not.
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return
	}
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))

	var z authorization
	if json.Unmarshal(body, &z) != nil || z.Status != "invalid" || z.Identifier.Value == "" {
		return
	}
	key := req.URL.String()
	g.mu.Lock()
	if g.logged == nil || len(g.logged) > 1000 {
		g.logged = make(map[string]struct{})
	}
	_, seen := g.logged[key]
	g.logged[key] = struct{}{}
	g.mu.Unlock()
	if seen {
		return
	}
	for _, c := range z.Challenges {
		if c.Error == nil {
			continue
		}
		g.log.Warn("acme validation failed",
			zap.String("host", z.Identifier.Value),
			zap.String("challenge", c.Type),
			zap.String("problem_type", c.Error.Type),
			zap.String("detail", c.Error.Detail))
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// accountKeyName is where autocert keeps the ACME account key in its cache.
const accountKeyName = "acme_account+key"

// gatedCache keeps a replica that may not order from writing an account
// key into the shared cache, where it would replace the leader's.
type gatedCache struct {
	autocert.Cache
	canOrder func() bool
}

// Put implements autocert.Cache.
func (c *gatedCache) Put(ctx context.Context, key string, data []byte) error {
	if key == accountKeyName && !c.canOrder() {
		return ErrNotLeader
	}
	return c.Cache.Put(ctx, key, data)
}
