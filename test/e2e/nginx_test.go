//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIngressNginxClass is an ingress-nginx user's cluster moved as it
// is: an IngressClass nginx of controller k8s.io/ingress-nginx, its
// Ingresses written for ingress-nginx, and Postern started with
// --ingress-class nginx --controller-class k8s.io/ingress-nginx. Their
// annotations work unchanged (rewrite-target with a capture group, a
// canary Ingress by header, app-root, permanent-redirect), a snippet and
// default-backend answers for a Service that does not exist, a CORS
// preflight is answered before limit-rpm counts requests, a snippet and
// an access rule Postern cannot honour fail closed with a Warning Event,
// and an Ingress of another class is not served.
func TestIngressNginxClass(t *testing.T) {
	ns := namespace(t, "nginxclass")
	const nginx = "nginx.ingress.kubernetes.io/"
	apply(t, ingressClass("nginx", "k8s.io/ingress-nginx", false)+
		echoWorkload(ns, "main", "nginx-main", 1, "v1")+echoWorkload(ns, "canary", "nginx-canary", 1, "v1")+
		annotated(strings.ReplaceAll(ingress(ns, "app", "nginx", "app.nginx.example.com", "/api(/|$)(.*)=main", "/=main"),
			"pathType: Prefix", "pathType: ImplementationSpecific"),
			nginx+"rewrite-target: /$2", nginx+"app-root: /home")+
		annotated(strings.ReplaceAll(ingress(ns, "app-canary", "nginx", "app.nginx.example.com", "/=canary"),
			"pathType: Prefix", "pathType: ImplementationSpecific"),
			nginx+`canary: "true"`, nginx+"canary-by-header: X-Canary")+
		annotated(ingress(ns, "moved", "nginx", "old.nginx.example.com", "/=main"),
			nginx+"permanent-redirect: https://new.nginx.example.com$request_uri")+
		annotated(ingress(ns, "errors", "nginx", "errors.nginx.example.com", "/=gone"),
			nginx+"default-backend: canary", nginx+`custom-http-errors: "404,503"`)+
		annotated(ingress(ns, "cors", "nginx", "cors.nginx.example.com", "/=main"),
			nginx+`enable-cors: "true"`, nginx+"cors-allow-origin: https://*.example.com", nginx+`limit-rpm: "1"`, nginx+`limit-burst-multiplier: "2"`)+
		annotated(ingress(ns, "snippet", "nginx", "snippet.nginx.example.com", "/=main"),
			nginx+`configuration-snippet: "more_set_headers X-A: b;"`)+
		annotated(ingress(ns, "guarded", "nginx", "guarded.nginx.example.com", "/=main"),
			nginx+"auth-type: digest", nginx+"auth-secret: users")+
		ingress(ns, "foreign", "someone-else", "foreign.nginx.example.com", "/=main"))
	t.Cleanup(func() { _, _ = kubectlErr("delete", "ingressclass", "nginx") })
	waitRollout(t, ns, "nginx-main", "nginx-canary")
	p := startPostern(t, "--ingress-class", "nginx", "--controller-class", "k8s.io/ingress-nginx", "--election-id", "nginxclass")

	eventually(t, 60*time.Second, func() error {
		code, body := p.get("app.nginx.example.com", "/API/orders?id=7")
		if code != 200 || !servedBy(body, "nginx-main") || !strings.Contains(body, "request: GET /orders?id=7 ") {
			return fmt.Errorf("rewrite-target: %d %q", code, lastLines(body, 3))
		}
		return nil
	})
	if code, body := canaryGet(t, p, "always"); code != 200 || !servedBy(body, "nginx-canary") {
		t.Errorf("canary-by-header always: %d %q", code, lastLines(body, 2))
	}
	if code, body := canaryGet(t, p, "never"); code != 200 || !servedBy(body, "nginx-main") {
		t.Errorf("canary-by-header never: %d %q", code, lastLines(body, 2))
	}
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct{ host, path, location string }{
		{"app.nginx.example.com", "/", "http://app.nginx.example.com/home"},
		{"old.nginx.example.com", "/a?b=1", "https://new.nginx.example.com/a?b=1"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != c.location {
			t.Errorf("%s%s: %d Location %q, want a redirect to %q", c.host, c.path, resp.StatusCode, resp.Header.Get("Location"), c.location)
		}
	}
	// default-backend: the rule's Service does not exist, the error
	// backend answers with X-Code 503.
	if code, body := p.get("errors.nginx.example.com", "/page?q=1"); code != 200 || !servedBy(body, "nginx-canary") ||
		!strings.Contains(body, "request: GET / ") || !strings.Contains(body, "X-Code: 503\n") || !strings.Contains(body, "X-Original-Uri: /page?q=1\n") {
		t.Errorf("default-backend: %d %q", code, body)
	}
	// enable-cors and limit-rpm: a preflight is answered before the limit
	// counts it; then 2 + 1 requests pass and the next is refused.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, "http://"+p.HTTPAddr+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "cors.nginx.example.com"
	req.Header.Set("Origin", "https://web.example.com")
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://web.example.com" {
		t.Errorf("CORS preflight: %d %v", resp.StatusCode, resp.Header)
	}
	var statuses []int
	for range 4 {
		code, _ := p.get("cors.nginx.example.com", "/api")
		statuses = append(statuses, code)
	}
	if fmt.Sprint(statuses) != "[200 200 200 503]" {
		t.Errorf("limit-rpm 1, burst multiplier 2: statuses %v, want [200 200 200 503]", statuses)
	}
	p.expect(t, "snippet.nginx.example.com", "/", 503, "")
	p.expect(t, "guarded.nginx.example.com", "/", 503, "")
	p.expect(t, "foreign.nginx.example.com", "/", 404, "")
	eventually(t, 20*time.Second, func() error {
		out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "type=Warning", "-o", "custom-columns=OBJ:.involvedObject.name,REASON:.reason", "--no-headers")
		for _, want := range []string{"snippet   SnippetRefused", "guarded   UnsupportedAnnotation"} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
				return fmt.Errorf("no Warning Event %q in:\n%s", want, out)
			}
		}
		return nil
	})
}

// canaryGet sends GET app.nginx.example.com/x through p with X-Canary set.
func canaryGet(t *testing.T, p *Postern, v string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.HTTPAddr+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.nginx.example.com"
	req.Header.Set("X-Canary", v)
	resp, err := client.Do(req)
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
	return resp.StatusCode, b.String()
}
