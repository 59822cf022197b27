package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// acmeChallengePrefix is where ACME http-01 challenges are fetched (RFC
// 8555 §8.3).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// PlainHTTP wraps next for the plain HTTP listener:
//   - ACME http-01 challenges for the hosts whose certificates come from
//     ACME go to acme (when not nil); challenges for other hosts are routed
//     like any request, so a backend can answer its own;
//   - requests for a host named in spec.tls whose redirect is on are
//     answered 308 Permanent Redirect to the same URL over HTTPS (308
//     keeps the method and body, RFC 9110 §15.4.9);
//   - everything else goes to next.
//
// httpsPort is the port clients reach HTTPS on (the Service's, usually
// 443, not the container's); 443 is left out of the Location.
func PlainHTTP(table func() *route.Table, acme http.Handler, httpsPort int, next http.Handler) http.Handler {
	port := ""
	if httpsPort > 0 && httpsPort != 443 {
		port = ":" + strconv.Itoa(httpsPort)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		th := table().TLSHost(r.Host)
		if th == nil {
			next.ServeHTTP(w, r)
			return
		}
		if th.ACME && acme != nil && strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
			acme.ServeHTTP(w, r)
			return
		}
		if !th.Redirect || r.RequestURI == "*" || r.Method == http.MethodConnect {
			next.ServeHTTP(w, r)
			return
		}
		host := route.NormalizeHost(r.Host)
		uri := r.RequestURI
		if !strings.HasPrefix(uri, "/") {
			// An absolute-form request-target: keep its path and query only.
			uri = r.URL.RequestURI()
		}
		w.Header().Set("Location", "https://"+host+port+uri)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// Covers reports whether a request for host may be served on a connection
// whose TLS server name is serverName (see tls.Store.Covers).
type Covers func(serverName, host string) bool

// SecureHTTP wraps next for the HTTPS listener:
//   - a request whose Host the connection's certificate does not cover is
//     answered 421 Misdirected Request (RFC 9110 §15.5.20): a client must
//     not use a connection set up for one host to reach another that has
//     a certificate of its own;
//   - responses for hosts with HSTS carry Strict-Transport-Security.
func SecureHTTP(table func() *route.Table, covers Covers, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && covers != nil && !covers(r.TLS.ServerName, r.Host) {
			writeError(w, http.StatusMisdirectedRequest)
			return
		}
		if th := table().TLSHost(r.Host); th != nil && th.HSTS != "" {
			w.Header().Set("Strict-Transport-Security", th.HSTS)
		}
		next.ServeHTTP(w, r)
	})
}
