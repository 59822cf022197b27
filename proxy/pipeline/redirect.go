package pipeline

import (
	"net/http"
	"strconv"

	"github.com/postern-dev/postern/proxy/route"
)

// httpsRedirect is the plain listener's policy that answers a request for
// a host named in spec.tls, whose redirect is on, with 308 Permanent
// Redirect to the same URL over HTTPS (308 keeps the method and body, RFC
// 9110 §15.4.9).
type httpsRedirect struct {
	port string // ":8443", or "" for 443
}

// newHTTPSRedirect returns the redirect for HTTPS on httpsPort, the port
// clients reach it on (the Service's, usually 443, not the container's);
// 443 is left out of the Location.
func newHTTPSRedirect(httpsPort int) httpsRedirect {
	if httpsPort > 0 && httpsPort != 443 {
		return httpsRedirect{port: ":" + strconv.Itoa(httpsPort)}
	}
	return httpsRedirect{}
}

func (r httpsRedirect) Request(x *Exchange) {
	th := x.table.TLSHost(x.In.Host())
	if th == nil || !th.Redirect {
		return
	}
	loc := "https://" + route.NormalizeHost(x.In.Host()) + r.port + x.In.RequestURI()
	x.Reply = Reply{
		Status: http.StatusPermanentRedirect,
		Fields: []Edit{{Op: Set, Name: "Location", Value: loc}},
		Reason: "redirect to HTTPS",
	}
}
