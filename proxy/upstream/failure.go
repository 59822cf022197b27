package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/postern-dev/postern/proxy/observe"
	"github.com/postern-dev/postern/proxy/route"
)

// ErrBodyTooLarge is the error reading a request body past the route's
// limit (Settings.MaxBodySize); the client gets 413.
var ErrBodyTooLarge = errors.New("request body larger than the route's limit")

// ErrClientGone is a wait for a response that the client ended by closing
// its connection.
var ErrClientGone = errors.New("client went away")

// ErrIdleTimeout is the error reading a response body whose endpoint was
// silent for longer than the idle timeout. It is a net.Error whose
// Timeout is true, so it is counted as an upstream timeout.
type ErrIdleTimeout struct{}

func (ErrIdleTimeout) Error() string { return "upstream idle timeout reading the response body" }

// Timeout reports true: the endpoint was too slow.
func (ErrIdleTimeout) Timeout() bool { return true }

// Temporary reports false, as net.Error asks of a timeout now.
func (ErrIdleTimeout) Temporary() bool { return false }

var _ net.Error = ErrIdleTimeout{}

// Failure is a forward that got no response head: why, and whose side
// broke.
type Failure struct {
	// Err is the last attempt's error.
	Err error
	// Body is the error reading the client's body, when that failed (the
	// client's fault, not the endpoint's).
	Body error
	// ClientGone is set when the client went away (its connection
	// closed, its request cancelled).
	ClientGone bool
}

// Client reports whether the client's side failed: nothing to blame the
// endpoint for, and nothing to retry.
func (f Failure) Client() bool { return f.Body != nil || f.ClientGone }

// Classify returns the status a failed forward answers, and the message
// logged with it: 413 for a body past the limit, 499 (logged, never
// sent) when the client went away, 400 for a malformed body, 504 for a
// timeout (connecting, or waiting for the response head, as in nginx),
// 502 for everything else.
func Classify(f Failure) (code int, msg string) {
	if f.Body != nil {
		switch {
		case errors.Is(f.Body, ErrBodyTooLarge):
			return http.StatusRequestEntityTooLarge, "request body too large"
		case f.ClientGone || ClientGone(f.Body):
			return observe.StatusClientClosedRequest, "client went away while sending the body"
		}
		return http.StatusBadRequest, "malformed request body"
	}
	if f.ClientGone {
		return observe.StatusClientClosedRequest, "client went away"
	}
	if IsTimeout(f.Err) {
		return http.StatusGatewayTimeout, "upstream timed out"
	}
	return http.StatusBadGateway, "upstream failed"
}

// ClientGone reports whether a body read error means the client's
// connection ended rather than that it sent a malformed body.
func ClientGone(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, ErrClientGone) || errors.As(err, &ne)
}

// Request names a request in the logs of its failures.
type Request struct {
	Method, Host, Path string
	Backend            *route.Backend // nil: none chosen
	Upstream           string         // the endpoint of the last attempt; empty: none
}

// Answered logs a request the proxy answered itself with code, and why:
// failures of an endpoint (502, 504) at warn, counted as upstream errors,
// everything else (the client's doing, a missing route, a backend the
// controller already reported) at debug.
func (c *Cluster) Answered(code int, msg string, r Request, err error) {
	level := zapcore.DebugLevel
	if code == http.StatusBadGateway || code == http.StatusGatewayTimeout {
		level = zapcore.WarnLevel
		if err != nil {
			c.metrics.UpstreamError(err)
		}
	}
	ce := c.log.Check(level, msg)
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.Int("status", code), zap.String("method", r.Method), zap.String("host", r.Host)}
	if r.Path != "" {
		fields = append(fields, zap.String("path", r.Path))
	}
	if r.Backend != nil {
		fields = append(fields, zap.String("backend", r.Backend.Key))
	}
	if r.Upstream != "" {
		fields = append(fields, zap.String("upstream", r.Upstream))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}
