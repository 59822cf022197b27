package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// External auth (route.ExternalAuth), as ingress-nginx's auth-url with
// nginx's auth_request: before the request is forwarded, a request
// without a body goes to the auth service with the client's header
// fields and what ingress-nginx adds (X-Original-URL, X-Original-Method,
// X-Auth-Request-Redirect, X-Real-IP, X-Forwarded-For, X-Request-ID,
// X-Sent-From); a 2xx answer lets the request through, 401 and 403 are
// the client's answer, anything else or no answer is 500. The request
// waits for the auth service: the check runs in the decision, which each
// engine makes on the request's own goroutine.

// Limits of the requests to auth services.
const (
	// authConnectTimeout is nginx's proxy_connect_timeout as ingress-nginx
	// sets it (5 s).
	authConnectTimeout = 5 * time.Second
	// DefaultAuthTimeout bounds an auth request whose route sets no read
	// timeout: nginx's proxy_read_timeout default.
	DefaultAuthTimeout = 60 * time.Second
	// maxAuthBody is the most of an auth answer's body read (and
	// dropped) so that its connection can be used again.
	maxAuthBody = 64 << 10
	// maxAuthCache bounds the answers the auth cache holds.
	maxAuthCache = 16384
)

// authService sends the auth requests of every route, over a pool of
// keep-alive connections shared across table swaps, and holds the auth
// cache.
type authService struct {
	client  *http.Client
	metrics *observe.Metrics
	cache   authCache
}

func newAuthService(m *observe.Metrics) *authService {
	tr := &http.Transport{
		Proxy:       nil, // never a proxy of the environment
		DialContext: (&net.Dialer{Timeout: authConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		// nginx's proxy_ssl_verify is off by default and ingress-nginx
		// leaves it off for auth-url: the auth service's certificate
		// is not verified (the README says so); SNI is sent.
		TLSClientConfig:        &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // as ingress-nginx
		TLSHandshakeTimeout:    authConnectTimeout,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        60 * time.Second, // auth-keepalive-timeout's default
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &authService{
		client: &http.Client{
			Transport: tr,
			// A redirect is the answer (a 3xx: 500), not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		metrics: m,
	}
}

// externalAuth is the check of a route.ExternalAuth.
type externalAuth struct {
	cfg     *route.ExternalAuth
	svc     *authService
	timeout time.Duration
	// signin is the sign-in URL; signinSep is "?" or "&" before the
	// redirect parameter, "" when the URL has that parameter already.
	signin    *route.Template
	signinSep string
	param     string
	// cacheID names the route in the cache's keys (ingress-nginx caches
	// per server and location).
	cacheID string
}

func newExternalAuth(rt *route.Route, cfg *route.ExternalAuth, svc *authService) *externalAuth {
	e := &externalAuth{cfg: cfg, svc: svc, timeout: DefaultAuthTimeout, param: cfg.SigninParam}
	if p := rt.Policy; p != nil && p.ReadTimeout > 0 {
		e.timeout = time.Duration(p.ReadTimeout)
	}
	if e.param == "" {
		e.param = "rd"
	}
	if cfg.Signin != nil {
		e.signin = cfg.Signin
		// As ingress-nginx, on the URL as written: the parameter is added
		// unless its query has it already.
		u, err := url.Parse(cfg.Signin.String())
		switch {
		case err != nil || len(u.Query()) == 0:
			e.signinSep = "?"
		case u.Query().Get(e.param) == "":
			e.signinSep = "&"
		}
	}
	if cfg.CacheKey != nil {
		e.cacheID = string(rt.PathType) + " " + rt.Path + " " + rt.Source.String()
	}
	return e
}

// authAnswer is what the auth service answered, as the check uses it.
type authAnswer struct {
	status  int
	cookies []string // Set-Cookie
	// challenges are the WWW-Authenticate fields of a 401.
	challenges []string
	// headers are the values of the route's ResponseHeaders, "" for one
	// the answer does not have.
	headers []string
}

func (e *externalAuth) check(x *Exchange) (verdict, Reply) {
	var key string
	if e.cfg.CacheKey != nil {
		key = e.cacheID + "\x00" + route.NormalizeHost(x.In.Host()) + "\x00" + x.ExpandString(e.cfg.CacheKey, nil)
		if a, ok := e.svc.cache.get(key); ok {
			return e.apply(x, a)
		}
	}
	a, ttl := e.ask(x)
	if key != "" && ttl > 0 {
		e.svc.cache.put(key, a, ttl)
	}
	return e.apply(x, a)
}

// apply turns the auth service's answer into the verdict.
func (e *externalAuth) apply(x *Exchange, a *authAnswer) (verdict, Reply) {
	for _, c := range a.cookies {
		if e.cfg.AlwaysSetCookie {
			x.Resp.Add("Set-Cookie", c)
		} else {
			x.Resp.AddOK("Set-Cookie", c)
		}
	}
	switch {
	case a.status >= 200 && a.status < 300:
		for i, h := range e.cfg.ResponseHeaders {
			if v := a.headers[i]; v != "" {
				x.Req.Set(h, v)
			} else {
				x.Req.Del(h)
			}
		}
		return allowed, Reply{}
	case a.status == http.StatusUnauthorized:
		r := ErrorReply(http.StatusUnauthorized, "auth-url: 401")
		if len(a.challenges) > 0 {
			r.Fields = append([]Edit(nil), r.Fields...)
			for _, c := range a.challenges {
				r.Fields = append(r.Fields, Edit{Op: Add, Name: "Www-Authenticate", Value: c})
			}
		}
		return refused, r
	case a.status == http.StatusForbidden:
		return refused, ErrorReply(http.StatusForbidden, "auth-url: 403")
	case a.status == 0:
		return failed, ErrorReply(http.StatusInternalServerError, "auth-url: no answer")
	}
	return failed, ErrorReply(http.StatusInternalServerError, "auth-url: status "+strconv.Itoa(a.status))
}

// ask sends the auth request of x and returns the answer (status 0: none)
// and how long it may be cached (0: not).
func (e *externalAuth) ask(x *Exchange) (*authAnswer, time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	req, err := e.request(ctx, x)
	if err != nil {
		e.svc.metrics.AuthRequest(observe.AuthError, time.Since(start))
		return &authAnswer{}, 0
	}
	resp, err := e.svc.client.Do(req)
	if err != nil {
		e.svc.metrics.AuthRequest(observe.AuthUnreachable, time.Since(start))
		return &authAnswer{}, 0
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAuthBody))
	_ = resp.Body.Close()
	a := &authAnswer{status: resp.StatusCode}
	switch {
	case a.status >= 200 && a.status < 300:
		e.svc.metrics.AuthRequest(observe.AuthAllowed, time.Since(start))
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		e.svc.metrics.AuthRequest(observe.AuthDenied, time.Since(start))
	default:
		e.svc.metrics.AuthRequest(observe.AuthError, time.Since(start))
	}
	for _, c := range resp.Header["Set-Cookie"] {
		if fieldSafe(c) {
			a.cookies = append(a.cookies, c)
		}
	}
	if a.status == http.StatusUnauthorized {
		for _, c := range resp.Header["Www-Authenticate"] {
			if fieldSafe(c) {
				a.challenges = append(a.challenges, c)
			}
		}
	}
	if n := len(e.cfg.ResponseHeaders); n > 0 {
		a.headers = make([]string, n)
		for i, h := range e.cfg.ResponseHeaders {
			if v := strings.Join(resp.Header.Values(h), ", "); fieldSafe(v) {
				a.headers[i] = v
			}
		}
	}
	return a, e.cacheFor(a.status, resp.Header)
}

// request returns the auth request of x.
func (e *externalAuth) request(ctx context.Context, x *Exchange) (*http.Request, error) {
	u := x.ExpandString(e.cfg.URL, nil)
	method := e.cfg.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" || req.URL.Host == "" {
		return nil, errNotHTTP
	}
	h := req.Header
	var conn []string // the fields Connection names: hop-by-hop too
	x.In.Values("Connection", func(v string) bool {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				conn = append(conn, t)
			}
		}
		return true
	})
	x.In.Fields(func(name, value string) bool {
		if !authForwards(name) {
			return true
		}
		for _, c := range conn {
			if strings.EqualFold(c, name) {
				return true
			}
		}
		k := textproto.CanonicalMIMEHeaderKey(name)
		h[k] = append(h[k], value)
		return true
	})
	// What ingress-nginx's auth location sets (nginx.tmpl).
	req.Host = req.URL.Hostname()
	scheme := x.scheme()
	h.Set("X-Original-Url", scheme+"://"+x.In.Host()+x.In.RequestURI())
	h.Set("X-Original-Method", x.In.Method())
	h.Set("X-Sent-From", "nginx-ingress-controller")
	h.Set("X-Real-Ip", x.clientIP())
	if xff := lastSet(&x.Req, headerXFF); xff != "" {
		h.Set(headerXFF, xff)
	} else {
		h.Del(headerXFF)
	}
	if rr := e.cfg.RequestRedirect; rr != nil {
		h.Set("X-Auth-Request-Redirect", x.ExpandString(rr, nil))
	} else {
		h.Set("X-Auth-Request-Redirect", x.In.RequestURI())
	}
	h.Set("X-Request-Id", x.ID)
	if e.cfg.Method != "" {
		h.Set("X-Original-Uri", x.In.RequestURI())
		h.Set("X-Scheme", passScheme(x))
	}
	for _, f := range clientFields {
		// The client certificate's result, never what a client sent.
		if v := lastSet(&x.Req, f); v != "" {
			h.Set(f, v)
		} else {
			h.Del(f)
		}
	}
	for _, f := range e.cfg.Headers {
		h.Set(f.Name, x.ExpandString(f.Value, nil))
	}
	for _, vs := range h {
		for _, v := range vs {
			if !fieldSafe(v) {
				return nil, errNotField
			}
		}
	}
	return req, nil
}

// Why an auth request could not be made: an auth URL that is not an http
// or https URL once its variables are expanded; a field value a variable
// brought a control character into.
var (
	errNotHTTP  = errors.New("auth-url: not an http or https URL")
	errNotField = errors.New("auth request: a field value with a control character")
)

// authForwards reports whether a client's field goes to the auth
// service: not the hop-by-hop ones, nor the body's framing (the request
// has no body), nor X-Forwarded-Proto (ingress-nginx clears it), nor Host.
func authForwards(name string) bool {
	switch strings.ToLower(name) {
	case "host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
		"content-length", "x-forwarded-proto", "expect":
		return false
	}
	return true
}

// lastSet returns the value of the last Set edit of name in e; "" when
// none.
func lastSet(e *Edits, name string) string {
	v := ""
	for _, ed := range e.All() {
		if ed.Name == name {
			switch ed.Op {
			case Set:
				v = ed.Value
			case Del:
				v = ""
			}
		}
	}
	return v
}

// passScheme is nginx's $pass_access_scheme: https for a request that
// came over TLS, to Postern or (a trusted proxy says) to that proxy.
func passScheme(x *Exchange) string {
	if x.Secure || x.viaHTTPS {
		return "https"
	}
	return "http"
}

// signinReply returns the redirect to the sign-in page that answers a
// 401: the sign-in URL with the original URL in the redirect parameter,
// its request URI escaped, as ingress-nginx writes it
// (?rd=$pass_access_scheme://$http_host$escaped_request_uri).
func (e *externalAuth) signinReply(x *Exchange) Reply {
	loc := x.ExpandString(e.signin, nil)
	if e.signinSep != "" {
		loc = loc + e.signinSep + e.param + "=" + passScheme(x) + "://" + x.In.Host() + escapeURIComponent(x.In.RequestURI())
	}
	if !fieldSafe(loc) {
		return ErrorReply(http.StatusBadRequest, "auth-signin: not a field value")
	}
	return redirectReply(http.StatusFound, loc, "auth-signin")
}

// escapeURIComponent escapes every byte but the unreserved ones
// (RFC 3986 §2.3), as nginx's set_escape_uri does.
func escapeURIComponent(s string) string {
	return string(appendEscapedComponent(make([]byte, 0, len(s)+len(s)/2), s))
}

// appendEscapedComponent appends s to dst escaped as escapeURIComponent.
func appendEscapedComponent(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// cacheFor returns how long an answer of status with header may be
// cached: the route's durations for the status, unless the answer sets a
// cookie or says it may not be stored (no-store, no-cache, private), or
// its Cache-Control max-age says for how long, as nginx's proxy_cache
// does.
func (e *externalAuth) cacheFor(status int, header http.Header) time.Duration {
	if e.cfg.CacheKey == nil || status == 0 || len(header["Set-Cookie"]) > 0 {
		return 0
	}
	var ttl time.Duration
	for _, c := range e.cfg.Cache {
		if c.Codes == nil || slices.Contains(c.Codes, status) {
			ttl = time.Duration(c.TTL)
			break
		}
	}
	if ttl == 0 {
		return 0
	}
	for _, v := range header.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache" || d == "private":
				return 0
			case strings.HasPrefix(d, "max-age="):
				if s, err := strconv.Atoi(d[len("max-age="):]); err == nil {
					if s <= 0 {
						return 0
					}
					ttl = time.Duration(s) * time.Second
				}
			}
		}
	}
	return ttl
}

// authCache holds auth answers by key until they expire, at most
// maxAuthCache of them: when full, expired ones go first, else one at
// random.
type authCache struct {
	mu sync.Mutex
	m  map[string]authCached
}

type authCached struct {
	a       *authAnswer
	expires time.Time
}

func (c *authCache) get(key string) (*authAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	if time.Now().After(e.expires) {
		delete(c.m, key)
		return nil, false
	}
	return e.a, true
}

func (c *authCache) put(key string, a *authAnswer, ttl time.Duration) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]authCached)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= maxAuthCache {
		dropped := false
		for k, e := range c.m {
			if now.After(e.expires) {
				delete(c.m, k)
				dropped = true
			}
		}
		if !dropped {
			for k := range c.m {
				delete(c.m, k)
				break
			}
		}
	}
	c.m[key] = authCached{a: a, expires: now.Add(ttl)}
}
