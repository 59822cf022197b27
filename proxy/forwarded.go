package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
)

var (
	protoHTTP  = "http"
	protoHTTPS = "https"
)

// rewrite aims the outgoing request at the picked endpoint and sets its
// forwarding headers. It keeps the client's Host: name-based backends
// route on it (RFC 9110 §7.2).
//
// ReverseProxy removed X-Forwarded-For, X-Forwarded-Host,
// X-Forwarded-Proto and Forwarded from the outgoing request before calling
// Rewrite. What is sent instead depends on whether the peer (the
// connection's remote address, or the PROXY protocol's source) is a
// trusted proxy (ServerOptions.TrustedProxies):
//   - untrusted, the default: X-Forwarded-For and X-Real-IP are the peer's
//     address, X-Forwarded-Host the Host, X-Forwarded-Proto the listener's
//     scheme, and no Forwarded: nothing the client claimed goes through;
//   - trusted: the peer's address is appended to the X-Forwarded-For it
//     sent, its X-Forwarded-Host, X-Forwarded-Proto and Forwarded are kept
//     (Postern adds no Forwarded element of its own), and X-Real-IP is the
//     real client found in X-Forwarded-For (realClient).
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
	peer, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		// Not an IP connection: send no address rather than the client's.
		delete(hdr, "X-Real-Ip")
		hdr["X-Forwarded-Host"] = []string{in.Host}
		hdr["X-Forwarded-Proto"] = []string{proto}
		return
	}
	if t := trustedPeer(in); t != nil {
		forwardTrusted(t, in, hdr, peer, proto)
		return
	}
	// One allocation for the four values; each header gets a slice of
	// capacity one, so appending to one never writes into another.
	v := []string{peer, peer, in.Host, proto}
	hdr["X-Forwarded-For"] = v[0:1:1]
	hdr["X-Real-Ip"] = v[1:2:2]
	hdr["X-Forwarded-Host"] = v[2:3:3]
	hdr["X-Forwarded-Proto"] = v[3:4:4]
}

// forwardTrusted sets the forwarding headers of a request whose peer is
// a trusted proxy: what it sent is passed on.
func forwardTrusted(t *TrustedProxies, in *http.Request, hdr http.Header, peer, proto string) {
	xff := peer
	if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + peer
	}
	client := peer
	if a, err := netip.ParseAddr(peer); err == nil {
		client = realClient(t, in.Header, a.Unmap())
	}
	hdr["X-Forwarded-For"] = []string{xff}
	hdr["X-Real-Ip"] = []string{client}
	hdr["X-Forwarded-Host"] = keep(in.Header["X-Forwarded-Host"], in.Host)
	hdr["X-Forwarded-Proto"] = keep(in.Header["X-Forwarded-Proto"], proto)
	if f := in.Header["Forwarded"]; len(f) > 0 {
		hdr["Forwarded"] = slices.Clone(f)
	}
}

// keep returns a copy of the values a trusted proxy sent, or def when it
// sent none.
func keep(sent []string, def string) []string {
	if len(sent) == 0 {
		return []string{def}
	}
	return slices.Clone(sent)
}
