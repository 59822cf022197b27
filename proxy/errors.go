package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/proxy/route"
)

// StatusClientClosedRequest is the status logged, never sent, for a request
// whose client went away before the response: nginx's 499.
const StatusClientClosedRequest = 499

// errorBodies are the bodies of the responses the proxy makes itself:
// short, generic, and never a backend address or an error text, which
// would tell a client about the cluster's insides.
var errorBodies = map[int]string{
	http.StatusBadRequest:            "bad request\n",
	http.StatusNotFound:              "not found\n",
	http.StatusMethodNotAllowed:      "method not allowed\n",
	http.StatusRequestEntityTooLarge: "content too large\n",
	http.StatusBadGateway:            "bad gateway\n",
	http.StatusServiceUnavailable:    "service unavailable\n",
	http.StatusGatewayTimeout:        "gateway timeout\n",
}

// writeError writes the proxy's own response for code.
func writeError(w http.ResponseWriter, code int) {
	body, ok := errorBodies[code]
	if !ok {
		body = strings.ToLower(http.StatusText(code)) + "\n"
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// fail answers r with code (nothing for StatusClientClosedRequest) and logs
// why: client errors and missing routes at debug (they are the client's
// business, and the controller already reports a backend without
// endpoints), backend failures at warn.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, msg string, be *route.Backend, err error) {
	level := zapcore.DebugLevel
	if code == http.StatusBadGateway || code == http.StatusGatewayTimeout {
		level = zapcore.WarnLevel
	}
	if ce := h.log.Check(level, msg); ce != nil {
		fields := []zap.Field{
			zap.Int("status", code),
			zap.String("method", r.Method),
			zap.String("host", r.Host),
			zap.String("path", r.URL.Path),
		}
		if be != nil {
			fields = append(fields, zap.String("backend", be.Key))
		}
		if st := stateOf(r); st != nil {
			fields = append(fields, zap.String("upstream", st.endpoint.Address))
		}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		ce.Write(fields...)
	}
	if code == StatusClientClosedRequest {
		noteStatus(w, code) // for metrics and the access log
		return              // nobody to answer
	}
	writeError(w, code)
}

// proxyError is the ReverseProxy's ErrorHandler: the request could not be
// sent or no response headers came back. It tells whose fault it was.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r)
	var be *route.Backend
	if st != nil {
		be = st.backend
	}
	code, msg := classify(r, st, err)
	if code == http.StatusBadGateway || code == http.StatusGatewayTimeout {
		h.metrics.upstreamError(err)
	}
	switch code {
	case http.StatusBadRequest:
		// The body's framing broke mid-request: the rest of the connection
		// cannot be trusted (RFC 9112 §8).
		w.Header().Set("Connection", "close")
	case http.StatusRequestEntityTooLarge:
		// The rest of the body is not read.
		w.Header().Set("Connection", "close")
	}
	h.fail(w, r, code, msg, be, err)
}

// classify maps a failure to reach the backend to a status.
func classify(r *http.Request, st *reqState, err error) (int, string) {
	if st != nil {
		if p := st.bodyErr.Load(); p != nil {
			if errors.Is(*p, errBodyTooLarge) {
				return http.StatusRequestEntityTooLarge, "request body too large"
			}
			if r.Context().Err() != nil || clientGone(*p) {
				return StatusClientClosedRequest, "client went away while sending the body"
			}
			return http.StatusBadRequest, "malformed request body"
		}
	}
	if r.Context().Err() != nil {
		return StatusClientClosedRequest, "client went away"
	}
	// ResponseHeaderTimeout, a dial timeout and a context deadline all
	// report Timeout(). A connect timeout answers 504 too, as in nginx.
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	return http.StatusBadGateway, "upstream failed"
}

// clientGone reports whether a body read error means the client's
// connection ended rather than that it sent a malformed body.
func clientGone(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.As(err, &ne)
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
