package h1

import "bytes"

// The HTTP/1.1 fast path (proxy/h1engine.go): requests whose
// head is plain and unambiguous are proxied by a loop of Postern's own, one
// goroutine per client connection; everything else goes to net/http as
// today. ParseHead decides which is which. It accepts a strict subset of
// HTTP/1.1 and says no to anything outside it, so a request it takes is one
// net/http (and the framing guard) would read the same way; a request it
// refuses is not an error, only not its business.

// maxFields bounds the header fields of a request the fast path takes.
const maxFields = 100

// Field is one header field of a request or response head, as slices of
// the read buffer: valid until the buffer is reused.
type Field struct {
	// Name is the field name as sent (a token, any case).
	Name []byte
	// Value is the field value without the whitespace around it; empty
	// for an empty value.
	Value []byte
}

// Head is the parsed head of a request the fast path may serve. Its zero
// value is ready for ParseHead, which fills every field.
type Head struct {
	// Method is the request method: upper-case letters only.
	Method []byte
	// Target is the request-target, in origin-form: starts with '/'.
	Target []byte
	// Host is the Host field's value, never empty when ParseHead reports
	// true.
	Host []byte
	// Fields are all the header fields, Host and framing ones included, in
	// the order they came.
	Fields []Field
	// ContentLength is the Content-Length, or -1 when the request has none
	// (and is not chunked: a body-less request).
	ContentLength int64
	// Chunked is true for Transfer-Encoding: chunked; false means the body,
	// if any, is ContentLength bytes.
	Chunked bool
	// CloseConn is true for Connection: close; false means the client
	// keeps the connection open.
	CloseConn bool
}

// reset empties h for the next request, keeping its fields' storage.
func (h *Head) reset() {
	*h = Head{Fields: h.Fields[:0], ContentLength: -1}
}

// HeadEnd returns the length of the head at the start of buf (through its
// closing CRLF CRLF), or -1 when buf does not hold a whole head.
func HeadEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// ParseHead parses head, a whole request head as HeadEnd delimits it,
// into h. It reports false for every request the fast path does not serve:
// anything but HTTP/1.1 with an origin-form target; a method that is not
// upper-case letters; a field name or value with a byte RFC 9110 §5.5 does
// not allow (control characters, bare CR or LF, NUL); obs-fold; whitespace
// before a colon; Host missing or repeated; Content-Length repeated, not
// all digits or huge; Transfer-Encoding other than exactly "chunked", or
// with a Content-Length; Upgrade, Expect, TE, Trailer, or a Connection
// option other than keep-alive and close; more than maxFields fields.
// net/http serves those (or refuses them, with the framing guard).
func ParseHead(head []byte, h *Head) bool {
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
	h.Method = line[:sp]
	for _, c := range h.Method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return false
	}
	h.Target = line[:sp]
	if h.Target[0] != '/' {
		return false // absolute-form, authority-form, asterisk-form: net/http's
	}
	for _, c := range h.Target {
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
			return len(rest) == 0 && len(h.Host) > 0 && (!h.Chunked || h.ContentLength < 0)
		}
		if len(h.Fields) == maxFields {
			return false
		}
		name, value, ok := cutField(line)
		if !ok || !h.field(name, value) {
			return false
		}
		h.Fields = append(h.Fields, Field{name, value})
	}
}

// field takes note of the fields that frame the request or change how the
// connection is used, and reports whether the request stays in the fast
// path's subset.
func (h *Head) field(name, value []byte) bool {
	switch {
	case EqualFold(name, "host"):
		if h.Host != nil || len(value) == 0 {
			return false
		}
		h.Host = value
	case EqualFold(name, "content-length"):
		n, ok := parseContentLength(value)
		if !ok || h.ContentLength >= 0 || n > 1<<50 {
			return false
		}
		h.ContentLength = int64(n)
	case EqualFold(name, "transfer-encoding"):
		if h.Chunked || !EqualFold(value, "chunked") {
			return false
		}
		h.Chunked = true
	case EqualFold(name, "connection"):
		closeConn, _, ok := connectionOptions(value)
		if !ok {
			return false // names other fields as hop-by-hop: net/http's
		}
		h.CloseConn = h.CloseConn || closeConn
	case EqualFold(name, "upgrade"), EqualFold(name, "expect"),
		EqualFold(name, "te"), EqualFold(name, "trailer"):
		return false
	}
	return true
}

// connectionOptions reads the comma-separated options of a Connection
// field without allocating: whether they say close or keep-alive, and
// false when one names anything else (other fields made hop-by-hop, which
// neither parser carries). Empty options are skipped.
func connectionOptions(value []byte) (closeConn, keepAlive, ok bool) {
	for rest, more := value, true; more; {
		var opt []byte
		opt, rest, more = bytes.Cut(rest, []byte(","))
		switch opt = trimSpace(opt); {
		case EqualFold(opt, "close"):
			closeConn = true
		case EqualFold(opt, "keep-alive"):
			keepAlive = true
		case len(opt) == 0:
		default:
			return false, false, false
		}
	}
	return closeConn, keepAlive, true
}

// cutCRLF splits b at its first CRLF. A bare CR or LF before it fails: so
// a line it returns holds neither CR nor LF.
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
