package proxy

import (
	"bytes"
	"io"
	"log"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/upstream"
)

// StatusClientClosedRequest is the status logged, never sent, for a request
// whose client went away before the response: nginx's 499.
const StatusClientClosedRequest = observe.StatusClientClosedRequest

// writeError writes the proxy's own response for code (the framing
// guard's 400, before any decision).
func writeError(w http.ResponseWriter, code int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, pipeline.ErrorBody(code))
}

// proxyError is the ReverseProxy's ErrorHandler: the request could not be
// sent or no response headers came back. upstream.Classify tells whose
// fault it was.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	f := upstream.Failure{Err: err, ClientGone: r.Context().Err() != nil}
	req := upstream.Request{Method: r.Method, Host: r.Host, Path: r.URL.Path}
	if st != nil {
		if p := st.bodyErr.Load(); p != nil {
			f.Body = *p
		}
		req.Backend, req.Upstream = st.x.Backend, st.endpoint.Address
	}
	code, msg := upstream.Classify(f)
	h.cluster.Answered(code, msg, req, err)
	if code == StatusClientClosedRequest {
		noteStatus(w, code) // for metrics and the access log
		return              // nobody to answer
	}
	reply := pipeline.ErrorReply(code, msg)
	// A body whose framing broke mid-request (400: the rest of the
	// connection cannot be trusted, RFC 9112 §8), or one past the limit
	// (413: the rest is not read), ends the connection.
	reply.Close = code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge
	writeReply(w, r, &reply)
}

// newStdLog returns a *log.Logger for net/http's ErrorLog fields that
// writes to logger at debug level: those lines are about single clients
// (TLS handshake failures, aborted copies) and would otherwise flood stderr.
// A recovered handler panic is a bug in Postern and is logged as an error.
func newStdLog(logger *zap.Logger) *log.Logger {
	return log.New(stdLogWriter{logger}, "", 0)
}

type stdLogWriter struct{ log *zap.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	level := zapcore.DebugLevel
	if bytes.HasPrefix(p, []byte("http: panic serving")) {
		level = zapcore.ErrorLevel
	}
	if w.log.Core().Enabled(level) {
		if ce := w.log.Check(level, string(bytes.TrimSpace(p))); ce != nil {
			ce.Write()
		}
	}
	return len(p), nil
}
