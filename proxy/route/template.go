package route

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
)

// Template is a value with nginx variables in it, as ingress-nginx users
// write them in annotations ("https://new.example.com$request_uri",
// "$http_x_user", "/new/$1"): literal text and a fixed set of variables,
// parsed once by the controller and expanded per request by the proxy.
// Nothing is ever handed to a configuration language: an unknown variable
// is a parse error, not text passed along.
//
// A Template renders in a table as its source text. The zero value expands
// to nothing.
type Template struct {
	src   string
	parts []Part
}

// VarKind says what a Part of a Template is.
type VarKind uint8

// The parts a Template is made of. Each variable has nginx's meaning.
const (
	// VarLiteral is text taken as it is (Part.Text).
	VarLiteral VarKind = iota
	// VarRequestURI is $request_uri: the path and query as sent.
	VarRequestURI
	// VarURI is $uri (and $document_uri): the request's decoded,
	// normalised path, without the query.
	VarURI
	// VarHost is $host: the request's host, lower case, without port.
	VarHost
	// VarScheme is $scheme: "http" or "https".
	VarScheme
	// VarArgs is $args (and $query_string): the query as sent, without
	// the '?'.
	VarArgs
	// VarIsArgs is $is_args: "?" when the request has a query, else "".
	VarIsArgs
	// VarRemoteAddr is $remote_addr: the client's address, the one found
	// behind trusted proxies.
	VarRemoteAddr
	// VarBinaryRemoteAddr is $binary_remote_addr: the client's address
	// as 4 or 16 bytes (nginx's hashing key of choice).
	VarBinaryRemoteAddr
	// VarMethod is $request_method.
	VarMethod
	// VarHeader is $http_<name>: the first request header field of the
	// name (Part.Name, in canonical form: underscores become dashes).
	VarHeader
	// VarCookie is $cookie_<name>: the value of the first cookie of the
	// name (Part.Name, compared without regard to case, as nginx does).
	VarCookie
	// VarArg is $arg_<name>: the value of the first query parameter of
	// the name (Part.Name, compared without regard to case), as sent.
	VarArg
	// VarEscapedRequestURI is $escaped_request_uri: $request_uri with
	// every byte but the unreserved ones (RFC 3986 §2.3) percent-escaped,
	// as ingress-nginx sets it for auth-signin (oauth2-proxy's documented
	// "rd=$escaped_request_uri").
	VarEscapedRequestURI
	// VarRemoteUser is $remote_user: the user name of the request's
	// Basic Authorization field, checked or not (nginx's).
	VarRemoteUser
	// VarCapture is $1 to $9: a capture group of the route's path
	// expression (Part.Group); only templates parsed with captures have
	// them.
	VarCapture
)

// Part is one literal or variable of a Template.
type Part struct {
	// Kind is what the part is.
	Kind VarKind
	// Text is the literal text of a VarLiteral part.
	Text string
	// Name is the header, cookie or parameter name of VarHeader,
	// VarCookie and VarArg parts.
	Name string
	// Group is the capture group (1 to 9) of a VarCapture part.
	Group int
}

// simpleVars are the variables without a name part.
var simpleVars = map[string]VarKind{
	"request_uri":         VarRequestURI,
	"uri":                 VarURI,
	"document_uri":        VarURI,
	"host":                VarHost,
	"scheme":              VarScheme,
	"args":                VarArgs,
	"query_string":        VarArgs,
	"is_args":             VarIsArgs,
	"remote_addr":         VarRemoteAddr,
	"binary_remote_addr":  VarBinaryRemoteAddr,
	"request_method":      VarMethod,
	"escaped_request_uri": VarEscapedRequestURI,
	"remote_user":         VarRemoteUser,
}

// namedVars are the variable families whose name follows a prefix.
var namedVars = []struct {
	prefix string
	kind   VarKind
}{
	{"http_", VarHeader},
	{"cookie_", VarCookie},
	{"arg_", VarArg},
}

// Variables lists the variables a Template understands, for messages.
const Variables = "$request_uri, $escaped_request_uri, $uri, $host, $scheme, $args, $is_args, $remote_addr, $binary_remote_addr, " +
	"$request_method, $remote_user, $http_<name>, $cookie_<name>, $arg_<name>"

// maxTemplate is the longest template source accepted.
const maxTemplate = 4096

// ParseTemplate parses s. With captures, $1 to $9 are capture groups of
// the route's path expression (rewrite-target); without, they are an
// error. A variable is $name or ${name}; a '$' not followed by a known
// variable, and text with control characters (CR, LF, NUL: they would
// split a header), are errors.
func ParseTemplate(s string, captures bool) (*Template, error) {
	if len(s) > maxTemplate {
		return nil, fmt.Errorf("longer than %d bytes", maxTemplate)
	}
	t := &Template{src: s}
	lit := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return nil, errors.New("control characters are not allowed")
		}
		if c != '$' {
			i++
			continue
		}
		p, n, err := parseVar(s[i+1:], captures)
		if err != nil {
			return nil, err
		}
		if lit < i {
			t.parts = append(t.parts, Part{Kind: VarLiteral, Text: s[lit:i]})
		}
		t.parts = append(t.parts, p)
		i += 1 + n
		lit = i
	}
	if lit < len(s) {
		t.parts = append(t.parts, Part{Kind: VarLiteral, Text: s[lit:]})
	}
	return t, nil
}

// parseVar parses the variable after a '$' at the start of s and returns
// it and the bytes it took.
func parseVar(s string, captures bool) (Part, int, error) {
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		// nginx takes one digit: "$12" is $1 then "2".
		if !captures {
			return Part{}, 0, fmt.Errorf("$%c is a capture group, and this value has none", s[0])
		}
		if s[0] == '0' {
			return Part{}, 0, errors.New("$0 is not a capture group; they are $1 to $9")
		}
		return Part{Kind: VarCapture, Group: int(s[0] - '0')}, 1, nil
	}
	var (
		name string
		n    int
	)
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return Part{}, 0, errors.New(`"${" without a closing "}"`)
		}
		name, n = s[1:end], end+1
	} else {
		for n < len(s) && isVarChar(s[n]) {
			n++
		}
		name = s[:n]
	}
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return r > 0x7f || !isVarChar(byte(r)) }) >= 0 {
		return Part{}, 0, fmt.Errorf("a '$' must start a variable (%s)", Variables)
	}
	if k, ok := simpleVars[name]; ok {
		return Part{Kind: k}, n, nil
	}
	for _, f := range namedVars {
		if rest, ok := strings.CutPrefix(name, f.prefix); ok && rest != "" {
			if f.kind == VarHeader {
				rest = textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(rest, "_", "-"))
			}
			return Part{Kind: f.kind, Name: rest}, n, nil
		}
	}
	return Part{}, 0, fmt.Errorf("$%s is not a variable Postern knows (%s)", name, Variables)
}

// isVarChar reports whether c may be part of an nginx variable name.
func isVarChar(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// LiteralTemplate returns a Template of s taken as it is, '$' included
// (ingress-nginx's custom-headers values are literal).
func LiteralTemplate(s string) *Template {
	t := &Template{src: s}
	if s != "" {
		t.parts = []Part{{Kind: VarLiteral, Text: s}}
	}
	return t
}

// MustTemplate is ParseTemplate for values known to be valid (tests,
// constants); it panics on an error.
func MustTemplate(s string, captures bool) *Template {
	t, err := ParseTemplate(s, captures)
	if err != nil {
		panic(fmt.Sprintf("route.MustTemplate(%q): %v", s, err))
	}
	return t
}

// String returns the template's source text.
func (t *Template) String() string {
	if t == nil {
		return ""
	}
	return t.src
}

// Parts returns the template's parts in order; the caller must not change
// them.
func (t *Template) Parts() []Part {
	if t == nil {
		return nil
	}
	return t.parts
}

// Literal reports whether the template has no variables, and its text.
func (t *Template) Literal() (string, bool) {
	for _, p := range t.Parts() {
		if p.Kind != VarLiteral {
			return "", false
		}
	}
	return t.String(), true
}

// MaxGroup returns the highest capture group the template refers to; 0
// when none.
func (t *Template) MaxGroup() int {
	n := 0
	for _, p := range t.Parts() {
		if p.Kind == VarCapture {
			n = max(n, p.Group)
		}
	}
	return n
}

// MarshalText returns the source text: tables show what the user wrote.
func (t *Template) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses what MarshalText wrote, capture groups allowed.
func (t *Template) UnmarshalText(text []byte) error {
	p, err := ParseTemplate(string(text), true)
	if err != nil {
		return fmt.Errorf("parse template: %w", err)
	}
	*t = *p
	return nil
}
