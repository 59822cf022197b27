package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Retryable reports whether an attempt that failed with err may be sent
// again to another endpoint. Safe means the endpoint cannot have acted on
// the request, or acting twice does no harm, and the body can be sent
// again:
//
//   - the attempt failed before any response byte, by a failure to
//     connect (nothing was sent) or by a connection refused, reset or
//     closed by the endpoint (something may have been);
//   - after a reset, the request is idempotent (Idempotent), or it has a
//     body of which nothing was sent (the endpoint got an incomplete
//     request, which it cannot have served);
//   - the body, if any, was never read (bodyRead false): it is not
//     buffered, so a body partly sent cannot be sent again.
//
// A response header timeout is never retried: the endpoint got the
// request and is slow, and a second endpoint would get the same load.
// The caller also checks its retry budget (Settings.Retries).
func Retryable(err error, idempotent, hasBody, bodyRead bool) bool {
	if bodyRead {
		return false
	}
	dial, ok := retryableErr(err)
	return ok && (dial || hasBody || idempotent)
}

// retryableErr reports whether err, from an attempt to reach an endpoint,
// may be retried elsewhere, and whether it is a failure to connect.
func retryableErr(err error) (dial, ok bool) {
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		isServerClosedIdle(err):
		return false, true
	}
	return false, false
}

// isServerClosedIdle reports net/http's error for a keep-alive connection
// the endpoint closed as the request went out. net/http retries those
// itself when it can, and returns this sentinel, unexported and
// undecorated, when it cannot; its text is all there is to match
// (TestServerClosedIdleText pins it).
func isServerClosedIdle(err error) bool {
	return err.Error() == "http: server closed idle connection"
}

// Idempotent reports whether sending a request twice has the effect of
// sending it once: its method says so (RFC 9110 §9.2.2), or it carries an
// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header; hasKey).
func Idempotent(method string, hasKey bool) bool {
	return IdempotentMethod(method) || hasKey
}

// IdempotentMethod reports the methods RFC 9110 §9.2.2 defines as
// idempotent.
func IdempotentMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
