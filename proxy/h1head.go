package proxy

import "bytes"

// The HTTP/1.1 fast path (h1engine.go): requests whose
// head is plain and unambiguous are proxied by a loop of Postern's own, one
// goroutine per client connection; everything else goes to net/http as
// today. parseH1Head decides which is which. It accepts a strict subset of
// HTTP/1.1 and says no to anything outside it, so a request it takes is one
// net/http (and the framing guard) would read the same way; a request it
// refuses is not an error, only not its business.

// h1MaxFields bounds the header fields of a request the fast path takes.
const h1MaxFields = 100

// h1Field is one header field of a request head, as slices of the read
// buffer: valid until the buffer is reused.
type h1Field struct {
	name, value []byte
}

// h1Head is the parsed head of a request the fast path may serve.
type h1Head struct {
	method []byte
	target []byte // origin-form: starts with '/'
	host   []byte // the Host field's value
	fields []h1Field
	// contentLength is the Content-Length, or -1 when the request has none
	// (and is not chunked: a body-less request).
	contentLength int64
	chunked       bool // Transfer-Encoding: chunked
	closeConn     bool // Connection: close
}

// reset empties h for the next request, keeping its fields' storage.
func (h *h1Head) reset() {
	*h = h1Head{fields: h.fields[:0], contentLength: -1}
}

// h1HeadEnd returns the length of the head at the start of buf (through its
// closing CRLF CRLF), or -1 when buf does not hold a whole head.
func h1HeadEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// parseH1Head parses head, a whole request head as h1HeadEnd delimits it,
// into h. It reports false for every request the fast path does not serve:
// anything but HTTP/1.1 with an origin-form target; a method that is not
// upper-case letters; a field name or value with a byte RFC 9110 §5.5 does
// not allow (control characters, bare CR or LF, NUL); obs-fold; whitespace
// before a colon; Host missing or repeated; Content-Length repeated, not
// all digits or huge; Transfer-Encoding other than exactly "chunked", or
// with a Content-Length; Upgrade, Expect, TE, Trailer, or a Connection
// option other than keep-alive and close; more than h1MaxFields fields.
// net/http serves those (or refuses them, with the framing guard).
func parseH1Head(head []byte, h *h1Head) bool {
	h.reset()
	line, rest, ok := cutCRLF(head)
	if !ok {
		return false
	}
	// request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp > 16 {
		return false
	}
	h.method = line[:sp]
	for _, c := range h.method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return false
	}
	h.target = line[:sp]
	if h.target[0] != '/' {
		return false // absolute-form, authority-form, asterisk-form: net/http's
	}
	for _, c := range h.target {
		// RFC 3986 characters only: no controls, spaces, '#', or bytes
		// over 0x7e.
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			// Both Content-Length and chunked: ambiguous (RFC 9112 §6.1).
			return len(rest) == 0 && len(h.host) > 0 && (!h.chunked || h.contentLength < 0)
		}
		if len(h.fields) == h1MaxFields {
			return false
		}
		name, value, ok := cutField(line)
		if !ok || !h.field(name, value) {
			return false
		}
		h.fields = append(h.fields, h1Field{name, value})
	}
}

// field takes note of the fields that frame the request or change how the
// connection is used, and reports whether the request stays in the fast
// path's subset.
func (h *h1Head) field(name, value []byte) bool {
	switch {
	case asciiEqualFold(name, "host"):
		if h.host != nil || len(value) == 0 {
			return false
		}
		h.host = value
	case asciiEqualFold(name, "content-length"):
		n, ok := parseContentLength(value)
		if !ok || h.contentLength >= 0 || n > 1<<50 {
			return false
		}
		h.contentLength = int64(n)
	case asciiEqualFold(name, "transfer-encoding"):
		if h.chunked || !asciiEqualFold(value, "chunked") {
			return false
		}
		h.chunked = true
	case asciiEqualFold(name, "connection"):
		for _, opt := range bytes.Split(value, []byte(",")) {
			switch opt = trimOWS(opt); {
			case asciiEqualFold(opt, "close"):
				h.closeConn = true
			case asciiEqualFold(opt, "keep-alive"), len(opt) == 0:
			default:
				return false // names other fields as hop-by-hop: net/http's
			}
		}
	case asciiEqualFold(name, "upgrade"), asciiEqualFold(name, "expect"),
		asciiEqualFold(name, "te"), asciiEqualFold(name, "trailer"):
		return false
	}
	return true
}

// cutField splits a header field line into its name and its value,
// without the whitespace around it. It reports false for a line RFC 9110
// §5.5 does not allow: no colon, an empty name (obs-fold starts with SP
// or HTAB), a byte in the name that is not a token character, a control
// character other than HTAB in the value.
func cutField(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name, value = line[:colon], trimOWS(line[colon+1:])
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	return name, value, fieldText(value)
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

// cutCRLF splits b at its first CRLF. A bare CR or LF before it fails.
func cutCRLF(b []byte) (line, rest []byte, ok bool) {
	for i, c := range b {
		switch c {
		case '\n':
			return nil, nil, false
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return b[:i], b[i+2:], true
			}
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// trimOWS trims optional whitespace (SP, HTAB; RFC 9110 §5.6.3).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
