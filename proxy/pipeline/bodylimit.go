package pipeline

import (
	"net/http"

	"github.com/postern-dev/postern/proxy/route"
)

// bodyLimit is the route policy of postern.dev/max-body-size: a request
// whose Content-Length is past the limit gets 413 at once (RFC 9110
// §15.5.14), its body unread and its connection closed; a body of unknown
// length (chunked) is counted as the engine sends it, and answered 413
// when it passes the limit (upstream.ErrBodyTooLarge).
type bodyLimit struct {
	max int64
}

// newBodyLimit returns the body limit of rt, if it has one.
func newBodyLimit(rt *route.Route) (bodyLimit, bool) {
	if rt.Policy == nil || rt.Policy.MaxBodySize <= 0 {
		return bodyLimit{}, false
	}
	return bodyLimit{max: rt.Policy.MaxBodySize}, true
}

func (b bodyLimit) Request(x *Exchange) {
	x.Settings.MaxBodySize = b.max
	if x.In.ContentLength() > b.max {
		x.fail(http.StatusRequestEntityTooLarge, "request body too large")
		x.Reply.Close = true
	}
}
