package h1

import (
	"bytes"
	"strings"
)

// The field grammar, shared by every parser of the package: the fast
// path's strict ones (ParseHead, ParseResp, CopyChunked's trailer) and the
// framing guard's shadow parser (Framing). One implementation, so that the
// two cannot drift apart on what a field line is: a head the fast path
// takes must be one the guard lets through (FuzzH1Head checks it).

// cutField splits a header field line into its name and its value,
// without the whitespace around it. It reports false for a line RFC 9110
// §5.5 does not allow, which is also a line net/textproto refuses: no
// colon, an empty name (obs-fold starts with SP or HTAB), a byte in the
// name that is not a token character, a control character other than HTAB
// in the value (RFC 9110 §5.1, §5.5).
//
// The value is checked before it is trimmed, so a CR at its end fails
// even though trimSpace would take it off: the framing parser hands it
// trailer lines with only their final CR removed.
func cutField(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name, value = line[:colon], line[colon+1:]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	if !fieldText(value) {
		return nil, nil, false
	}
	return name, trimSpace(value), true
}

// validField reports whether l is a field line net/textproto accepts: a
// token, a colon, and a value of visible characters, spaces and tabs (RFC
// 9110 §5.1, §5.5); leading whitespace would be obs-fold. It is cutField's
// check, for the trailer lines of both parsers (Framing, CopyChunked).
func validField(l []byte) bool {
	_, _, ok := cutField(l)
	return ok
}

// fieldText reports whether b holds no control character other than HTAB:
// a valid field value or reason phrase.
func fieldText(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// trimSpace trims what net/textproto trims around a field value
// (textproto.TrimString, which net/http applies to Content-Length): SP
// and HTAB, the optional whitespace of RFC 9110 §5.6.3, and CR and LF.
// CR and LF only matter to the framing parser, which sees a field line
// with just its final CR removed, as Go's line reader does, and must trim
// the rest as Go would to agree with it on the body's length. The strict
// parsers never hold a CR or LF in a line (cutCRLF and readLine refuse
// them), so for them this trims OWS.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isTokenChar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseContentLength accepts what Go's parseContentLength accepts: one or
// more decimal digits, at most 2^63-1.
func parseContentLength(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63-1 {
			return 0, false
		}
	}
	return n, true
}

// EqualFold reports whether b equals s, a lower-case ASCII string, ignoring
// ASCII case only, as Go does for field names and framing values
// (bytes.EqualFold would also fold U+017F to 's' and U+212A to 'k').
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// SameName reports whether the field name b is name, ignoring ASCII case
// on both sides (name may be in canonical form, "X-Request-Id").
func SameName(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range b {
		x, y := b[i], name[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
