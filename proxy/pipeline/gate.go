package pipeline

import (
	"net/http"

	"github.com/postern-dev/postern/proxy/route"
)

// gate is the listener policy that answers the requests no backend is
// meant to get:
//   - the asterisk-form asks about the proxy itself (RFC 9112 §3.2.4,
//     RFC 9110 §9.3.7): OPTIONS * gets 200, any other method 400;
//   - CONNECT gets 405: a tunnel through an ingress to wherever the client
//     names would make every backend an open proxy;
//   - an HTTP/2 request whose Host field names another authority than its
//     :authority is malformed (RFC 9113 §8.3.1): 400. Routing, the access
//     log and any rule keyed on the host must not disagree on which host
//     a request is for.
type gate struct{}

func (gate) Request(x *Exchange) {
	in := x.In
	switch {
	case in.RequestURI() == "*":
		if in.Method() != http.MethodOptions {
			x.fail(http.StatusBadRequest, "asterisk-form request-target")
			return
		}
		x.Reply = Reply{Status: http.StatusOK, Reason: "OPTIONS *"}
	case in.Method() == http.MethodConnect:
		x.fail(http.StatusMethodNotAllowed, "CONNECT")
	case x.ProtoMajor >= 2 && !hostMatchesAuthority(in):
		x.fail(http.StatusBadRequest, "Host differs from :authority")
	}
}

// hostMatchesAuthority reports whether an HTTP/2 or HTTP/3 request's Host
// fields, if it has any, name the host of its :authority: one field, the
// same host once normalized as routing normalizes it.
func hostMatchesAuthority(in Head) bool {
	v, n := in.Header("Host")
	switch n {
	case 0:
		return true
	case 1:
		return route.NormalizeHost(v) == route.NormalizeHost(in.Host())
	}
	return false
}
