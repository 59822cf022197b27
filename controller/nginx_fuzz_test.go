package controller

import (
	"strings"
	"testing"
)

// FuzzNginxAnnotations gives one value to an ingress-nginx annotation,
// with the annotations that turn its group on (enable-cors, affinity,
// canary, default-backend), and checks that reading never panics, that an
// annotation is read, refused or falls back with one short message, and
// that what is kept holds no control characters.
func FuzzNginxAnnotations(f *testing.F) {
	for _, s := range []string{"", "true", "5", "https://*.a.test:8080, null,", "$request_uri", "10.0.0.0/8, ::1",
		"404,503", "off", "\x00", "https://x$http_\xff", strings.Repeat("9", 40), "a b", "/$1$2"} {
		f.Add(uint16(0), s)
	}
	names := make([]string, 0, len(nginxTable))
	for _, r := range nginxTable {
		names = append(names, r.Name)
	}
	f.Fuzz(func(t *testing.T, i uint16, v string) {
		name := names[int(i)%len(names)]
		ann := map[string]string{
			DefaultAnnotationsPrefix + "/" + name:                 v,
			DefaultAnnotationsPrefix + "/enable-cors":             "true",
			DefaultAnnotationsPrefix + "/affinity":                "cookie",
			DefaultAnnotationsPrefix + "/upstream-hash-by":        "$uri",
			DefaultAnnotationsPrefix + "/mirror-target":           "http://m.test$request_uri",
			DefaultAnnotationsPrefix + "/upstream-hash-by-subset": "true",
		}
		var cfg ingressConfig
		res := readNginx(ann, DefaultAnnotationsPrefix, &cfg)
		if len(res.refused) != len(res.keys) || len(res.problems) != len(res.problemKeys) {
			t.Fatalf("refused %d keys %d, problems %d keys %d", len(res.refused), len(res.keys), len(res.problems), len(res.problemKeys))
		}
		for _, r := range res.refused {
			checkMessage(t, r.msg)
		}
		for _, m := range res.problems {
			checkMessage(t, m)
		}
		p := cfg.policy
		if c := p.CORS; c != nil {
			for _, s := range append([]string{c.AllowMethods, c.AllowHeaders, c.ExposeHeaders}, c.AllowOrigins...) {
				if !fieldValueOK(s) {
					t.Fatalf("CORS field %q kept", s)
				}
			}
		}
		if a := p.Affinity; a != nil && (!fieldValueOK(a.CookieName) || !fieldValueOK(a.CookiePath) || !fieldValueOK(a.CookieDomain)) {
			t.Fatalf("affinity %+v kept", a)
		}
		if rl := p.RateLimit; rl != nil && (rl.RPS < 0 || rl.RPM < 0 || rl.Connections < 0 || rl.Burst < 0) {
			t.Fatalf("limits %+v", rl)
		}
		if h := p.HashBy; h != nil && (h.SubsetSize < 0 || h.SubsetSize > 64) {
			t.Fatalf("hash-by %+v", h)
		}
		for _, c := range cfg.nginx.errorCodes {
			if c < 400 || c > 599 {
				t.Fatalf("error code %d kept", c)
			}
		}
	})
}
