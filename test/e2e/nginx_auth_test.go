//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestIngressNginxAuth: the authentication annotations of ingress-nginx
// users, on the real API server. Basic auth from a Secret made as the
// ingress-nginx docs make it (htpasswd file, kubectl create secret
// generic --from-file=auth), then changed; oauth2-proxy's documented
// annotations (auth-url, auth-signin with $escaped_request_uri,
// auth-response-headers) against an auth service of the test's own that
// answers as oauth2-proxy's /oauth2/auth does; satisfy any; a missing
// Secret and an auth service that is down fail closed.
func TestIngressNginxAuth(t *testing.T) {
	ns := namespace(t, "nginxauth")
	const nginx = "nginx.ingress.kubernetes.io/"

	hash, err := bcrypt.GenerateFromPassword([]byte("bar"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(file, []byte("foo:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "secret", "generic", "basic-auth", "-n", ns, "--from-file=auth="+file)

	// The auth service: oauth2-proxy's /oauth2/auth answers 202 with the
	// user's fields for a session cookie, else 401.
	var authHits atomic.Int64
	authSvc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authHits.Add(1)
		if r.URL.Path == "/headers" {
			// auth-proxy-set-headers: the ConfigMap's field, a variable expanded.
			if r.Header.Get("My-Custom-Header") != "42" || r.Header.Get("X-Uri") != "/h?x=1" {
				w.WriteHeader(http.StatusForbidden)
			}
			return
		}
		if r.URL.Path != "/oauth2/auth" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		c, err := r.Cookie("_oauth2_proxy")
		if err != nil || c.Value != "alice-session" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Auth-Request-User", "alice")
		w.Header().Set("X-Auth-Request-Email", "alice@example.com")
		w.WriteHeader(http.StatusAccepted)
	}))
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authSvc.Listener = l
	authSvc.Start()
	t.Cleanup(authSvc.Close)
	dead, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	kubectl(t, "create", "configmap", "auth-headers", "-n", ns, "--from-literal=My-Custom-Header=42", "--from-literal=X-Uri=$request_uri")
	kubectl(t, "create", "configmap", "custom-headers", "-n", ns, "--from-literal=X-Frame-Options=DENY")
	apply(t, echoWorkload(ns, "app", "auth-app", 1, "v1")+
		annotated(ingress(ns, "headers", ns, "headers.auth.example.com", "/=app"),
			`"`+nginx+`auth-url": "http://`+l.Addr().String()+`/headers"`,
			nginx+"auth-proxy-set-headers: "+ns+"/auth-headers", nginx+"custom-headers: "+ns+"/custom-headers")+
		annotated(ingress(ns, "basic", ns, "basic.auth.example.com", "/=app"),
			nginx+"auth-type: basic", nginx+"auth-secret: basic-auth", `"`+nginx+`auth-realm": "Authentication Required - foo"`)+
		annotated(ingress(ns, "oauth2", ns, "app.auth.example.com", "/=app"),
			`"`+nginx+`auth-url": "http://`+l.Addr().String()+`/oauth2/auth"`,
			`"`+nginx+`auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri"`,
			`"`+nginx+`auth-response-headers": "x-auth-request-user, x-auth-request-email"`)+
		annotated(ingress(ns, "either", ns, "either.auth.example.com", "/=app"),
			nginx+"satisfy: any", nginx+"auth-type: basic", nginx+"auth-secret: basic-auth",
			`"`+nginx+`auth-url": "http://`+l.Addr().String()+`/oauth2/auth"`)+
		annotated(ingress(ns, "missing", ns, "missing.auth.example.com", "/=app"),
			nginx+"auth-type: basic", nginx+"auth-secret: nothere")+
		annotated(ingress(ns, "down", ns, "down.auth.example.com", "/=app"),
			`"`+nginx+`auth-url": "http://`+deadAddr+`/check"`))
	waitRollout(t, ns, "auth-app")
	p := startPostern(t, "--ingress-class", ns, "--election-id", ns)

	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	type answer struct {
		StatusCode int
		Header     http.Header
	}
	send := func(host, target string, header http.Header) (answer, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return answer{resp.StatusCode, resp.Header}, b.String()
	}
	basicCreds := func(user, pw string) http.Header {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://x/", nil)
		req.SetBasicAuth(user, pw)
		return req.Header
	}

	p.expect(t, "basic.auth.example.com", "/", 401, "")
	resp, _ := send("basic.auth.example.com", "/", nil)
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="Authentication Required - foo"` {
		t.Errorf("basic auth challenge %q", got)
	}
	if resp, body := send("basic.auth.example.com", "/", basicCreds("foo", "bar")); resp.StatusCode != http.StatusOK || !servedBy(body, "auth-app") || strings.Contains(strings.ToLower(body), "authorization:") {
		t.Errorf("basic auth with credentials: %d %q (the Authorization field must not reach the endpoint)", resp.StatusCode, lastLines(body, 8))
	}
	if resp, _ := send("basic.auth.example.com", "/", basicCreds("foo", "baz")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("basic auth with a wrong password: %d", resp.StatusCode)
	}
	// The Secret changes: the old password stops working.
	if err := os.WriteFile(file, []byte("foo:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"), 0o600); err != nil { // "secret"
		t.Fatal(err)
	}
	out, err := kubectlStdin(kubectl(t, "create", "secret", "generic", "basic-auth", "-n", ns, "--from-file=auth="+file, "--dry-run=client", "-o", "yaml"), "replace", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl replace: %v\n%s", err, out)
	}
	eventually(t, 20*time.Second, func() error {
		if resp, _ := send("basic.auth.example.com", "/", basicCreds("foo", "secret")); resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the new password after the Secret changed: %d", resp.StatusCode)
		}
		return nil
	})
	if resp, _ := send("basic.auth.example.com", "/", basicCreds("foo", "bar")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old password after the Secret changed: %d", resp.StatusCode)
	}

	// oauth2-proxy: not signed in, the sign-in redirect with rd=.
	resp, _ = send("app.auth.example.com", "/orders?id=7", nil)
	if want := "https://app.auth.example.com/oauth2/start?rd=%2Forders%3Fid%3D7"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("oauth2-proxy, not signed in: %d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, body := send("app.auth.example.com", "/orders", http.Header{"Cookie": {"_oauth2_proxy=alice-session"}, "X-Auth-Request-User": {"mallory"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "X-Auth-Request-User: alice\n") || !strings.Contains(body, "X-Auth-Request-Email: alice@example.com\n") || strings.Contains(body, "mallory") {
		t.Errorf("oauth2-proxy, signed in: %d %q", resp.StatusCode, lastLines(body, 12))
	}

	// satisfy any: basic credentials or the auth service.
	if resp, _ := send("either.auth.example.com", "/", basicCreds("foo", "secret")); resp.StatusCode != http.StatusOK {
		t.Errorf("satisfy any, basic credentials: %d", resp.StatusCode)
	}
	if resp, _ := send("either.auth.example.com", "/", http.Header{"Cookie": {"_oauth2_proxy=alice-session"}}); resp.StatusCode != http.StatusOK {
		t.Errorf("satisfy any, a session: %d", resp.StatusCode)
	}
	if resp, _ := send("either.auth.example.com", "/", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("satisfy any, neither: %d", resp.StatusCode)
	}

	// ConfigMaps: fields sent to the auth service, and on every answer.
	if resp, _ := send("headers.auth.example.com", "/h?x=1", nil); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("auth-proxy-set-headers and custom-headers: %d, X-Frame-Options %q", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
	}
	p.expect(t, "missing.auth.example.com", "/", 503, "")
	p.expect(t, "down.auth.example.com", "/", 500, "")
	eventually(t, 20*time.Second, func() error {
		out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "type=Warning", "-o", "custom-columns=OBJ:.involvedObject.name,REASON:.reason", "--no-headers")
		if !strings.Contains(strings.Join(strings.Fields(out), " "), "missing SecretNotFound") {
			return fmt.Errorf("no Warning Event SecretNotFound for the missing Secret in:\n%s", out)
		}
		return nil
	})
	if n := metricSum(t, p, `postern_proxy_auth_request_seconds_count`); n < 3 {
		t.Errorf("postern_proxy_auth_request_seconds_count %v, want the auth requests counted", n)
	}
}
