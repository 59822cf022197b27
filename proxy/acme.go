package proxy

import (
	"bytes"
	"net/http"
	"net/url"

	"github.com/postern-dev/postern/proxy/pipeline"
)

// acmeChallenges returns the pipeline's view of h, the ACME issuer's
// http-01 handler (nil: none).
func acmeChallenges(h http.Handler) pipeline.Challenges {
	if h == nil {
		return nil
	}
	return acmeHandler{h}
}

// acmeHandler answers ACME http-01 challenges with the issuer's handler
// (autocert's), recording what it writes as the pipeline's Reply: a
// challenge is a small GET answered from memory, rare next to the
// traffic.
type acmeHandler struct{ h http.Handler }

func (a acmeHandler) Challenge(host, path string) pipeline.Reply {
	req := &http.Request{Method: http.MethodGet, Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
	rec := &recorder{header: http.Header{}}
	a.h.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	r := pipeline.Reply{Status: rec.code, Body: rec.body.String(), Reason: "ACME challenge"}
	for name, vals := range rec.header {
		if name == "Content-Length" {
			continue
		}
		for _, v := range vals {
			r.Fields = append(r.Fields, pipeline.Edit{Op: pipeline.Add, Name: name, Value: v})
		}
	}
	return r
}

// recorder is the ResponseWriter an ACME challenge is answered through.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
