package pipeline

import "net/http"

// misdirected is the secure listener's policy that answers 421
// Misdirected Request (RFC 9110 §15.5.20) to a request whose Host the
// connection's certificate does not cover: a client must not use a
// connection set up for one host to reach another that has a certificate
// of its own.
type misdirected struct {
	covers func(serverName, host string) bool
}

func (m misdirected) Request(x *Exchange) {
	if !m.covers(x.ServerName, x.In.Host()) {
		x.fail(http.StatusMisdirectedRequest, "host not covered by the connection's certificate")
	}
}
