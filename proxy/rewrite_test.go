package proxy

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/proxy/route"
)

// TestRewriteOnEveryEngine sends rewritten requests (rewrite-target with
// capture groups, the query kept, x-forwarded-prefix, upstream-vhost)
// through each engine: the backend sees the new target and Host, and the
// fast path decides them all.
func TestRewriteOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, e engine) {
		t.Parallel()
		b := newBackend(t, "b", nil)
		be := backendOf("b", "", b)
		tbl := route.NewTable([]*route.VirtualHost{vhost("app.test",
			&route.Route{
				Match: route.Match{PathType: route.PathRegex, Path: "(?i)^/app(/|$)(.*)"},
				Policy: &route.Policy{
					Rewrite:      &route.Rewrite{Target: route.MustTemplate("/$2", true), ForwardedPrefix: "/app"},
					UpstreamHost: route.MustTemplate("internal.$host", false),
				},
				Backends: route.Single(be),
			},
			&route.Route{Match: route.Match{PathType: route.PathRegex, Path: "(?i)^/"}, Backends: route.Single(be)},
		)}, nil)
		h := New(Options{})
		h.Swap(tbl)
		t.Cleanup(h.CloseIdleConnections)
		addr, s := startServer(t, e, h, ServerOptions{})
		c := newClient(t)
		for _, tt := range []struct{ target, wantURI, wantHost, wantPrefix string }{
			{"/app/a%20b/c?x=1&y=%2F", "/a%20b/c?x=1&y=%2F", "internal.app.test", "/app"},
			{"/APP", "/", "internal.app.test", "/app"},
			{"/other?q", "/other?q", "app.test", ""},
		} {
			resp, body := get(t, c, addr, "app.test", tt.target)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %q", tt.target, resp.StatusCode, body)
			}
			last := b.lastRequest()
			if got := last.URL.RequestURI(); got != tt.wantURI {
				t.Errorf("%s: the backend got %q, want %q", tt.target, got, tt.wantURI)
			}
			if last.Host != tt.wantHost {
				t.Errorf("%s: the backend got Host %q, want %q", tt.target, last.Host, tt.wantHost)
			}
			if got := last.Header.Get("X-Forwarded-Prefix"); got != tt.wantPrefix {
				t.Errorf("%s: X-Forwarded-Prefix %q, want %q", tt.target, got, tt.wantPrefix)
			}
			if got := last.Header.Get("X-Forwarded-Host"); got != "app.test" {
				t.Errorf("%s: X-Forwarded-Host %q, want the client's Host", tt.target, got)
			}
		}
		if e.fast() && served(s) != 3 {
			t.Errorf("the fast path decided %d requests, want all 3", served(s))
		}
	})
}
