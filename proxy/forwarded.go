package proxy

import (
	"net"
	"net/http/httputil"
	"strings"
)

var (
	protoHTTP  = "http"
	protoHTTPS = "https"
)

// rewrite aims the outgoing request at the picked endpoint. Like
// ProxyRequest.SetXForwarded it appends the client's address to
// X-Forwarded-For and sets X-Forwarded-Host and X-Forwarded-Proto (which
// ReverseProxy removed from the outgoing request before calling Rewrite);
// it also sets X-Real-IP, replacing any the client sent. It keeps the
// client's Host: name-based backends route on it (RFC 9110 §7.2).
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	st := stateOf(in)
	out.URL.Scheme = backendScheme(st.backend.Protocol)
	out.URL.Host = st.endpoint.Address
	out.Host = in.Host
	if st.requestID != nil {
		// Kept from the client or generated (requestID); the same value
		// goes back in the response.
		out.Header[HeaderRequestID] = st.requestID
	}

	proto := protoHTTP
	if in.TLS != nil {
		proto = protoHTTPS
	}
	hdr := out.Header
	clientIP, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		// Not an IP connection: send no address rather than the client's.
		delete(hdr, "X-Real-Ip")
		hdr["X-Forwarded-Host"] = []string{in.Host}
		hdr["X-Forwarded-Proto"] = []string{proto}
		return
	}
	xff := clientIP
	if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + clientIP
	}
	// One allocation for the four values; each header gets a slice of
	// capacity one, so appending to one never writes into another.
	v := []string{xff, clientIP, in.Host, proto}
	hdr["X-Forwarded-For"] = v[0:1:1]
	hdr["X-Real-Ip"] = v[1:2:2]
	hdr["X-Forwarded-Host"] = v[2:3:3]
	hdr["X-Forwarded-Proto"] = v[3:4:4]
}
