package pipeline

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/postern-dev/postern/proxy/route"
	"github.com/postern-dev/postern/proxy/upstream"
)

// Hashes of "secret" made by openssl passwd (salt "saltsalt") and
// sha1+base64: another implementation than the one that checks them.
const (
	apr1Secret   = "$apr1$saltsalt$LrttParrLPdxvgutaSXWJ0"
	md5Secret    = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"
	sha256Secret = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"
	sha512Secret = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
	shaSecret    = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="
)

func bcryptHash(t testing.TB, password, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func basicHeader(user, password string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
}

// authPipeline serves one route of host "auth.test" with policy pol.
func authPipeline(t testing.TB, pol *route.Policy) (*Pipeline, *Listener) {
	t.Helper()
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	be := &route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}
	rt := &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: pol, Backends: route.Single(be),
		Source: route.Source{Namespace: "ns", Name: "ing"}}
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("auth.test", []*route.Route{rt})}, nil))
	return p, p.Listener(ListenerOptions{})
}

func fromPeer(ip string) func(*Exchange) {
	return func(x *Exchange) { x.Remote, x.PeerIP = ip+":1234", ip }
}

func TestBasicAuthHashes(t *testing.T) {
	t.Parallel()
	users := []route.User{
		{Name: "bcrypt-a", Hash: bcryptHash(t, "secret", "$2a$")},
		{Name: "bcrypt-b", Hash: bcryptHash(t, "secret", "$2b$")},
		{Name: "bcrypt-y", Hash: bcryptHash(t, "secret", "$2y$")},
		{Name: "apr1", Hash: apr1Secret},
		{Name: "md5", Hash: md5Secret},
		{Name: "sha256", Hash: sha256Secret},
		{Name: "sha512", Hash: sha512Secret},
		{Name: "sha", Hash: shaSecret},
		{Name: "plain", Hash: "{PLAIN}secret"},
		{Name: "empty", Hash: ""},              // ingress-nginx e2e: "foo:" → 401
		{Name: "unknown", Hash: "secret"},      // no scheme: not a plain password
		{Name: "broken", Hash: "$2a$04$short"}, // malformed bcrypt
	}
	_, l := authPipeline(t, &route.Policy{BasicAuth: &route.BasicAuth{Realm: "test auth", Source: "Secret ns/a", Users: users}})
	for _, u := range users {
		want := 0
		if scheme, _ := route.ParseHash(u.Hash); scheme == "" {
			want = http.StatusUnauthorized
		}
		x := decide(l, &testHead{host: "auth.test", header: basicHeader(u.Name, "secret")}, fromPeer("192.0.2.7"))
		if x.Reply.Status != want {
			t.Errorf("%s: status %d (%s), want %d", u.Name, x.Reply.Status, x.Reply.Reason, want)
		}
		if want == 0 {
			if !x.Req.Drops("Authorization") {
				t.Errorf("%s: the Authorization field is forwarded", u.Name)
			}
			x = decide(l, &testHead{host: "auth.test", header: basicHeader(u.Name, "Secret")}, fromPeer("192.0.2.7"))
			if x.Reply.Status != http.StatusUnauthorized {
				t.Errorf("%s with a wrong password: status %d", u.Name, x.Reply.Status)
			}
		}
	}
}

func TestBasicAuthAnswers(t *testing.T) {
	t.Parallel()
	users := []route.User{{Name: "foo", Hash: bcryptHash(t, "bar", "$2y$")}, {Name: "foo", Hash: "{PLAIN}second"}}
	_, l := authPipeline(t, &route.Policy{BasicAuth: &route.BasicAuth{Realm: "test auth", Users: users}})
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", nil, 401},
		{"right", basicHeader("foo", "bar"), 0},
		{"scheme in another case", http.Header{"Authorization": {"bAsIc   " + base64.StdEncoding.EncodeToString([]byte("foo:bar"))}}, 0},
		{"no padding", http.Header{"Authorization": {"Basic " + base64.RawStdEncoding.EncodeToString([]byte("foo:bar"))}}, 0},
		{"the second foo line does not count", basicHeader("foo", "second"), 401},
		{"wrong password", basicHeader("foo", "baz"), 401},
		{"unknown user", basicHeader("bar", "bar"), 401},
		{"password with a colon", basicHeader("foo", "bar:"), 401},
		{"no colon", http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("foobar"))}}, 401},
		{"not base64", http.Header{"Authorization": {"Basic !!!"}}, 401},
		{"another scheme", http.Header{"Authorization": {"Bearer abc"}}, 401},
		{"two fields", http.Header{"Authorization": {basicHeader("foo", "bar").Get("Authorization"), "Basic eDp5"}}, 400},
	}
	for _, tt := range tests {
		x := decide(l, &testHead{host: "auth.test", header: tt.header}, fromPeer("192.0.2.7"))
		if x.Reply.Status != tt.want {
			t.Errorf("%s: status %d (%s), want %d", tt.name, x.Reply.Status, x.Reply.Reason, tt.want)
		}
		if tt.want == 401 {
			if got := replyField(&x.Reply, "Www-Authenticate"); got != `Basic realm="test auth"` {
				t.Errorf("%s: WWW-Authenticate %q", tt.name, got)
			}
		}
	}
}

// replyField returns the values of name among r's fields, joined by "|".
func replyField(r *Reply, name string) string {
	var vals []string
	for _, f := range r.Fields {
		if f.Name == name && f.Op != Del {
			vals = append(vals, f.Value)
		}
	}
	return strings.Join(vals, "|")
}

// A verified login is remembered: the next requests make no hash check
// (counted: bcrypt at cost 12 takes hundreds of milliseconds), a wrong
// password is always checked, and a change of the users forgets it.
func TestBasicAuthRemembers(t *testing.T) {
	t.Parallel()
	h, err := bcrypt.GenerateFromPassword([]byte("bar"), 12)
	if err != nil {
		t.Fatal(err)
	}
	users := []route.User{{Name: "foo", Hash: string(h)}}
	p, l := authPipeline(t, &route.Policy{BasicAuth: &route.BasicAuth{Users: users}})
	store := p.kept.users.get(users)
	if x := decide(l, &testHead{host: "auth.test", header: basicHeader("foo", "bar")}, nil); x.Reply.Status != 0 {
		t.Fatalf("status %d", x.Reply.Status)
	}
	if n := len(store.verified); n != 1 {
		t.Fatalf("%d credentials remembered, want 1", n)
	}
	for range 20 {
		if x := decide(l, &testHead{host: "auth.test", header: basicHeader("foo", "bar")}, nil); x.Reply.Status != 0 {
			t.Fatalf("status %d", x.Reply.Status)
		}
	}
	if n := store.checks.Load(); n != 1 {
		t.Errorf("%d hash checks for 21 logged-in requests, want 1: the login is not remembered", n)
	}
	if x := decide(l, &testHead{host: "auth.test", header: basicHeader("foo", "baz")}, nil); x.Reply.Status != 401 {
		t.Errorf("a wrong password after a login: status %d", x.Reply.Status)
	}
	if n := store.checks.Load(); n != 2 {
		t.Errorf("%d hash checks after a wrong password, want 2: a wrong one is always checked", n)
	}
	if n := len(store.verified); n != 1 {
		t.Errorf("%d credentials remembered, want 1 (a failure is not remembered)", n)
	}
	// New users (the Secret changed): the old store goes.
	p.Swap(route.NewTable([]*route.VirtualHost{route.NewVirtualHost("auth.test", []*route.Route{{
		Match: route.Match{PathType: route.PathPrefix, Path: "/"}, Policy: &route.Policy{BasicAuth: &route.BasicAuth{Users: []route.User{{Name: "foo", Hash: "{PLAIN}new"}}}},
		Backends: route.Single(&route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}}),
	}})}, nil))
	if x := decide(l, &testHead{host: "auth.test", header: basicHeader("foo", "bar")}, nil); x.Reply.Status != 401 {
		t.Errorf("the old password after the users changed: status %d", x.Reply.Status)
	}
	if p.kept.users.has(userKey(users)) {
		t.Error("the old users' store is kept after a swap without them")
	}
}

// authServer is an auth service for the tests: it answers by the path
// of the request (/ok, /deny, /forbid, /fail, /slow) and records the
// requests it got.
type authServer struct {
	*httptest.Server
	mu   sync.Mutex
	got  []*http.Request
	hits atomic.Int32
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		a.mu.Lock()
		a.got = append(a.got, r.Clone(r.Context()))
		a.mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("X-Auth-User", "alice")
			w.Header().Add("Set-Cookie", "alma=armud")
			w.WriteHeader(http.StatusAccepted)
		case "/ok-nocookie":
			w.Header().Set("X-Auth-User", "bob")
		case "/deny":
			w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
			w.Header().Add("Set-Cookie", "alma=armud")
			w.WriteHeader(http.StatusUnauthorized)
		case "/forbid":
			w.WriteHeader(http.StatusForbidden)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authServer) last(t *testing.T) *http.Request {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		t.Fatal("the auth service got no request")
	}
	return a.got[len(a.got)-1]
}

func extAuth(url string) *route.ExternalAuth {
	return &route.ExternalAuth{URL: route.MustTemplate(url, false)}
}

func TestExternalAuthVerdicts(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	tests := []struct {
		path   string
		status int // 0: forwarded
	}{
		{"/ok", 0}, {"/ok-nocookie", 0}, {"/deny", 401}, {"/forbid", 403}, {"/fail", 500}, {"/redirect", 500},
	}
	for _, tt := range tests {
		ea := extAuth(as.URL + tt.path)
		ea.ResponseHeaders = []string{"X-Auth-User", "Foo"}
		_, l := authPipeline(t, &route.Policy{ExternalAuth: ea})
		x := decide(l, &testHead{host: "auth.test", header: http.Header{"Foo": {"bar"}}}, fromPeer("192.0.2.7"))
		if x.Reply.Status != tt.status {
			t.Errorf("%s: status %d (%s), want %d", tt.path, x.Reply.Status, x.Reply.Reason, tt.status)
			continue
		}
		switch tt.path {
		case "/ok", "/ok-nocookie":
			want := map[string]string{"/ok": "alice", "/ok-nocookie": "bob"}[tt.path]
			if got := editedValues(&x.Req, "X-Auth-User"); got != want {
				t.Errorf("%s: X-Auth-User sent on is %q, want %q", tt.path, got, want)
			}
			// ingress-nginx's e2e "should overwrite Foo header with auth
			// response": the client's Foo never reaches the endpoint.
			if !x.Req.Drops("Foo") || editedValues(&x.Req, "Foo") != "" {
				t.Errorf("%s: the client's Foo is sent on", tt.path)
			}
		case "/deny":
			if got := replyField(&x.Reply, "Www-Authenticate"); got != `Bearer realm="x"` {
				t.Errorf("/deny: WWW-Authenticate %q", got)
			}
		}
	}
}

func TestExternalAuthRequest(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	ea := extAuth(as.URL + "/ok?host=$host")
	ea.Headers = route.HeaderEdits{{Op: route.HeaderSet, Name: "My-Custom-Header", Value: route.MustTemplate("42", false)}}
	_, l := authPipeline(t, &route.Policy{ExternalAuth: ea})
	in := &testHead{host: "auth.test", uri: "/a/b?c=d", path: "/a/b", query: "c=d", method: http.MethodPost, contentLength: 5, header: http.Header{
		"Cookie":            {"session=1"},
		"Authorization":     {"Bearer t"},
		"Content-Length":    {"5"},
		"Connection":        {"X-Hop"},
		"X-Hop":             {"1"},
		"X-Forwarded-Proto": {"https"},
		"X-Original-Url":    {"http://evil/"},
	}}
	x := decide(l, in, fromPeer("192.0.2.7"))
	if x.Reply.Status != 0 {
		t.Fatalf("status %d (%s)", x.Reply.Status, x.Reply.Reason)
	}
	r := as.last(t)
	want := map[string]string{
		"Cookie":                  "session=1",
		"Authorization":           "Bearer t",
		"X-Original-Url":          "http://auth.test/a/b?c=d",
		"X-Original-Method":       "POST",
		"X-Sent-From":             "nginx-ingress-controller",
		"X-Real-Ip":               "192.0.2.7",
		"X-Forwarded-For":         "192.0.2.7",
		"X-Auth-Request-Redirect": "/a/b?c=d",
		"X-Request-Id":            x.ID,
		"My-Custom-Header":        "42",
		"X-Forwarded-Proto":       "",
		"X-Hop":                   "",
		"X-Original-Uri":          "", // only with auth-method
	}
	for k, v := range want {
		if got := strings.Join(r.Header.Values(k), ","); got != v {
			t.Errorf("auth request %s: %q, want %q", k, got, v)
		}
	}
	if r.Method != http.MethodGet || r.ContentLength != 0 {
		t.Errorf("auth request %s with %d bytes of body, want a GET without", r.Method, r.ContentLength)
	}
	if r.URL.RawQuery != "host=auth.test" {
		t.Errorf("auth URL's variables: query %q", r.URL.RawQuery)
	}
	if r.Host != "127.0.0.1" {
		t.Errorf("auth request Host %q, want the URL's host without port", r.Host)
	}

	ea2 := extAuth(as.URL + "/ok")
	ea2.Method = "HEAD"
	_, l = authPipeline(t, &route.Policy{ExternalAuth: ea2})
	decide(l, &testHead{host: "auth.test", uri: "/x", path: "/x"}, fromPeer("192.0.2.7"))
	r = as.last(t)
	if r.Method != http.MethodHead || r.Header.Get("X-Original-Uri") != "/x" || r.Header.Get("X-Scheme") != "http" {
		t.Errorf("auth-method: %s, X-Original-URI %q, X-Scheme %q", r.Method, r.Header.Get("X-Original-Uri"), r.Header.Get("X-Scheme"))
	}
}

func TestExternalAuthSignin(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	tests := []struct {
		signin, param, want string
	}{
		// ingress-nginx's e2e: only the request URI is escaped.
		{"http://$host/auth/start", "", "http://auth.test/auth/start?rd=http://auth.test%2F%3Fa%3Db%26c%3Dd"},
		{"http://$host/auth/start", "orig", "http://auth.test/auth/start?orig=http://auth.test%2F%3Fa%3Db%26c%3Dd"},
		{"https://sso.test/start?x=1", "", "https://sso.test/start?x=1&rd=http://auth.test%2F%3Fa%3Db%26c%3Dd"},
		{"https://sso.test/start?rd=https://$host$request_uri", "", "https://sso.test/start?rd=https://auth.test/?a=b&c=d"},
	}
	for _, tt := range tests {
		ea := extAuth(as.URL + "/deny")
		ea.Signin, ea.SigninParam = route.MustTemplate(tt.signin, false), tt.param
		_, l := authPipeline(t, &route.Policy{ExternalAuth: ea})
		x := decide(l, &testHead{host: "auth.test", uri: "/?a=b&c=d", query: "a=b&c=d"}, fromPeer("192.0.2.7"))
		if x.Reply.Status != http.StatusFound || replyField(&x.Reply, "Location") != tt.want {
			t.Errorf("signin %s: %d Location %q, want 302 %q", tt.signin, x.Reply.Status, replyField(&x.Reply, "Location"), tt.want)
		}
		// The auth service's cookie goes with the redirect (a 302).
		if got := editedValues(&x.Resp, "Set-Cookie"); got != "alma=armud" {
			t.Errorf("signin %s: Set-Cookie %q", tt.signin, got)
		}
	}
}

// auth-always-set-cookie: the auth service's cookies go only with 2xx and
// 3xx answers unless it is set (ingress-nginx's e2e: upstream 503, no
// cookie).
func TestExternalAuthCookies(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	for _, always := range []bool{false, true} {
		ea := extAuth(as.URL + "/ok")
		ea.AlwaysSetCookie = always
		_, l := authPipeline(t, &route.Policy{ExternalAuth: ea})
		x := decide(l, &testHead{host: "auth.test"}, fromPeer("192.0.2.7"))
		var ok200, ok503 bool
		for _, ed := range x.Resp.All() {
			if ed.Name == "Set-Cookie" && ed.Value == "alma=armud" {
				ok200, ok503 = ed.Applies(200), ed.Applies(503)
			}
		}
		if !ok200 || ok503 != always {
			t.Errorf("always %v: cookie on a 200 %v, on a 503 %v", always, ok200, ok503)
		}
	}
}

func TestExternalAuthUnreachable(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	slow := extAuth(as.URL + "/slow")
	_, l := authPipeline(t, &route.Policy{ExternalAuth: slow, ReadTimeout: route.Duration(200 * time.Millisecond)})
	if x := decide(l, &testHead{host: "auth.test"}, fromPeer("192.0.2.7")); x.Reply.Status != 500 {
		t.Errorf("an auth service that times out: status %d", x.Reply.Status)
	}
	_, l = authPipeline(t, &route.Policy{ExternalAuth: extAuth(deadURL + "/ok")})
	if x := decide(l, &testHead{host: "auth.test"}, fromPeer("192.0.2.7")); x.Reply.Status != 500 {
		t.Errorf("an auth service that is down: status %d", x.Reply.Status)
	}
	// A variable that makes the URL something else than http(s).
	_, l = authPipeline(t, &route.Policy{ExternalAuth: extAuth("$http_x_auth")})
	if x := decide(l, &testHead{host: "auth.test", header: http.Header{"X-Auth": {"file:///etc/passwd"}}}, fromPeer("192.0.2.7")); x.Reply.Status != 500 {
		t.Errorf("an auth URL a variable made into file://: status %d", x.Reply.Status)
	}
}

// ingress-nginx's e2e auth cache cases: after a login the auth service
// goes away and the same route still lets the client in; another route
// (or host) does not share the cache.
func TestExternalAuthCache(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Auth-User", "alice")
	}))
	defer srv.Close()
	mk := func(path string) *route.Route {
		ea := extAuth(srv.URL + "/")
		ea.CacheKey = route.MustTemplate("fixed", false)
		ea.Cache = []route.CacheForCode{{Codes: []int{200, 201, 401}, TTL: route.Duration(30 * time.Minute)}}
		ea.ResponseHeaders = []string{"X-Auth-User"}
		return &route.Route{Match: route.Match{PathType: route.PathPrefix, Path: path}, Policy: &route.Policy{ExternalAuth: ea},
			Backends: route.Single(&route.Backend{Key: "ns/app:80", Endpoints: []route.Endpoint{{Address: "192.0.2.10:80"}}})}
	}
	p := New(Options{Cluster: upstream.New(upstream.Options{})})
	p.Swap(route.NewTable([]*route.VirtualHost{
		route.NewVirtualHost("auth.test", []*route.Route{mk("/"), mk("/other")}),
		route.NewVirtualHost("other.test", []*route.Route{mk("/")}),
	}, nil))
	l := p.Listener(ListenerOptions{})
	if x := decide(l, &testHead{host: "auth.test"}, fromPeer("192.0.2.7")); x.Reply.Status != 0 {
		t.Fatalf("login: status %d", x.Reply.Status)
	}
	down.Store(true)
	for range 3 {
		x := decide(l, &testHead{host: "auth.test"}, fromPeer("192.0.2.7"))
		if x.Reply.Status != 0 || editedValues(&x.Req, "X-Auth-User") != "alice" {
			t.Errorf("cached login: status %d, X-Auth-User %q", x.Reply.Status, editedValues(&x.Req, "X-Auth-User"))
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the auth service got %d requests, want 1 (the rest cached)", n)
	}
	if x := decide(l, &testHead{host: "auth.test", path: "/other"}, fromPeer("192.0.2.7")); x.Reply.Status != 500 {
		t.Errorf("another location: status %d, want 500", x.Reply.Status)
	}
	if x := decide(l, &testHead{host: "other.test"}, fromPeer("192.0.2.7")); x.Reply.Status != 500 {
		t.Errorf("another server: status %d, want 500", x.Reply.Status)
	}
}

// satisfy: all needs every check; any, one (ingress-nginx's e2e
// satisfy.go: basic credentials 200, none 302 to the sign-in page).
func TestSatisfy(t *testing.T) {
	t.Parallel()
	as := newAuthServer(t)
	users := []route.User{{Name: "uname", Hash: "{PLAIN}pwd"}}
	mk := func(any bool, authPath string) *Listener {
		ea := extAuth(as.URL + authPath)
		ea.Signin = route.MustTemplate("http://$host/auth/start", false)
		ea.ResponseHeaders = []string{"X-Auth-User"}
		_, l := authPipeline(t, &route.Policy{
			SourceRanges: &route.SourceRanges{Allow: prefixes("10.0.0.0/8")},
			BasicAuth:    &route.BasicAuth{Realm: "r", Users: users},
			ExternalAuth: ea,
			SatisfyAny:   any,
		})
		return l
	}
	creds := basicHeader("uname", "pwd")
	tests := []struct {
		name     string
		any      bool
		authPath string
		peer     string
		header   http.Header
		want     int
	}{
		{"all: outside the allow list", false, "/ok", "192.0.2.7", creds, 403},
		{"all: no credentials", false, "/ok", "10.1.1.1", nil, 302}, // basic's 401, as the sign-in redirect
		{"all: every check passes", false, "/ok", "10.1.1.1", creds, 0},
		{"all: the auth service refuses", false, "/forbid", "10.1.1.1", creds, 403},
		{"all: the auth service fails", false, "/fail", "10.1.1.1", creds, 500},
		{"any: the allow list lets in", true, "/fail", "10.1.1.1", nil, 0},
		{"any: basic credentials", true, "/deny", "192.0.2.7", creds, 0},
		{"any: the auth service lets in", true, "/ok", "192.0.2.7", nil, 0},
		{"any: none lets in", true, "/forbid", "192.0.2.7", nil, 302}, // basic's 401 wins over 403s
		{"any: the auth service fails", true, "/fail", "192.0.2.7", nil, 500},
	}
	for _, tt := range tests {
		x := decide(mk(tt.any, tt.authPath), &testHead{host: "auth.test", header: tt.header}, fromPeer(tt.peer))
		if x.Reply.Status != tt.want {
			t.Errorf("%s: status %d (%s), want %d", tt.name, x.Reply.Status, x.Reply.Reason, tt.want)
			continue
		}
		if tt.want == 0 {
			if !x.Req.Drops("Authorization") {
				t.Errorf("%s: Authorization is forwarded", tt.name)
			}
			if tt.name == "any: basic credentials" && (!x.Req.Drops("X-Auth-User") || editedValues(&x.Req, "X-Auth-User") != "") {
				t.Errorf("%s: the client's X-Auth-User may pass without the auth service", tt.name)
			}
		}
	}
}

func BenchmarkBasicAuthLoggedIn(b *testing.B) {
	users := []route.User{{Name: "foo", Hash: bcryptHash(b, "bar", "$2y$")}}
	_, l := authPipeline(b, &route.Policy{BasicAuth: &route.BasicAuth{Users: users}})
	in := &testHead{host: "auth.test", header: basicHeader("foo", "bar")}
	var x Exchange
	for b.Loop() {
		x.Reset()
		x.In = in
		l.Decide(&x)
		if x.Reply.Status != 0 {
			b.Fatal(fmt.Sprint(x.Reply.Status))
		}
	}
}
