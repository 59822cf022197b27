package pipeline

import (
	"net/netip"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// Expand appends the value of t for the request of x to dst and returns
// it: the one evaluator of the nginx variables of every annotation that
// takes them (redirects, rewrite-target, upstream-vhost, upstream-hash-by,
// mirror-target). groups are the capture groups of the route's path
// expression, groups[0] the whole match ($1 is groups[1]); a group the
// match does not have expands to nothing, as in nginx. Variables of the
// forwarding policy ($remote_addr) are those it decided.
//
// Expand allocates only when dst must grow.
func (x *Exchange) Expand(dst []byte, t *route.Template, groups []string) []byte {
	for _, p := range t.Parts() {
		switch p.Kind {
		case route.VarLiteral:
			dst = append(dst, p.Text...)
		case route.VarRequestURI:
			dst = append(dst, x.In.RequestURI()...)
		case route.VarURI:
			dst = append(dst, x.In.Path()...)
		case route.VarHost:
			dst = append(dst, route.NormalizeHost(x.In.Host())...)
		case route.VarScheme:
			dst = append(dst, x.scheme()...)
		case route.VarArgs:
			dst = append(dst, x.In.RawQuery()...)
		case route.VarIsArgs:
			if x.In.RawQuery() != "" {
				dst = append(dst, '?')
			}
		case route.VarRemoteAddr:
			dst = append(dst, x.clientIP()...)
		case route.VarBinaryRemoteAddr:
			if a, err := netip.ParseAddr(x.clientIP()); err == nil {
				dst = append(dst, a.AsSlice()...)
			}
		case route.VarMethod:
			dst = append(dst, x.In.Method()...)
		case route.VarHeader:
			if p.Name == "Host" {
				// $http_host: the Host field, which a Head holds apart.
				dst = append(dst, x.In.Host()...)
				break
			}
			v, _ := x.In.Header(p.Name)
			dst = append(dst, v...)
		case route.VarRemoteUser:
			if v, n := x.In.Header("Authorization"); n == 1 {
				if user, _, ok := basicCredentials(v); ok {
					dst = append(dst, user...)
				}
			}
		case route.VarEscapedRequestURI:
			dst = appendEscapedComponent(dst, x.In.RequestURI())
		case route.VarCookie:
			v, _ := x.Cookie(p.Name)
			dst = append(dst, v...)
		case route.VarArg:
			v, _ := queryArg(x.In.RawQuery(), p.Name)
			dst = append(dst, v...)
		case route.VarCapture:
			if p.Group < len(groups) {
				dst = append(dst, groups[p.Group]...)
			}
		}
	}
	return dst
}

// ExpandString returns the value of t for x as a string (see Expand); a
// template without variables costs no allocation.
func (x *Exchange) ExpandString(t *route.Template, groups []string) string {
	if s, ok := t.Literal(); ok {
		return s
	}
	return string(x.Expand(make([]byte, 0, 64), t, groups))
}

// scheme returns "https" for a request that came over TLS, else "http".
func (x *Exchange) scheme() string {
	if x.Secure {
		return "https"
	}
	return "http"
}

// clientIP returns the client's address as the forwarding policy found
// it, or the peer's before that policy ran.
func (x *Exchange) clientIP() string {
	if x.ClientIP != "" {
		return x.ClientIP
	}
	return x.PeerIP
}

// Cookie returns the value of the first cookie of the request named name,
// compared without regard to case as nginx's $cookie_ does, and whether
// there is one. It reads the Cookie fields (RFC 6265 §5.4: "a=1; b=2")
// without allocating; the value may point into the engine's buffer.
func (x *Exchange) Cookie(name string) (string, bool) {
	first, n := x.In.Header("Cookie")
	if n <= 1 {
		// One field, the common case (HTTP/2 may split cookies over
		// several): no callback, whose captures would escape.
		return cookieIn(first, name)
	}
	return cookieInFields(x.In, name)
}

// cookieInFields is Cookie over every Cookie field of in.
func cookieInFields(in Head, name string) (value string, ok bool) {
	in.Values("Cookie", func(v string) bool {
		value, ok = cookieIn(v, name)
		return !ok
	})
	return value, ok
}

// cookieIn returns the value of cookie name in one Cookie field value.
func cookieIn(field, name string) (string, bool) {
	for field != "" {
		var pair string
		pair, field, _ = strings.Cut(field, ";")
		k, v, found := strings.Cut(strings.TrimSpace(pair), "=")
		if found && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// queryArg returns the value, as sent, of the first parameter of rawQuery
// whose name is name without regard to case (nginx's $arg_), and whether
// there is one.
func queryArg(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// ExpandField returns the value of t for x for a header field (Location,
// Host), and false when it cannot be one: a variable brought in a
// control character (a decoded path's %0D%0A), which would split the
// head. Callers answer 400 rather than send it.
func (x *Exchange) ExpandField(t *route.Template, groups []string) (string, bool) {
	v := x.ExpandString(t, groups)
	if !fieldSafe(v) {
		return "", false
	}
	return v, true
}
