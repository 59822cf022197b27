package h1

// Resp is the parsed head of a backend's response on the fast path, as
// slices of the upstream connection's read buffer. Its zero value is ready
// for ParseResp, which fills every field.
type Resp struct {
	// Status is the status code, 100 to 999 (never 101).
	Status int
	// Reason is the reason phrase; empty when the status line has none.
	Reason []byte
	// Fields are all the header fields, framing ones included, in the
	// order they came.
	Fields []Field
	// Body says how the body is delimited (RFC 9112 §6.3).
	Body Body
	// ContentLength is the Content-Length when Body is BodyLength; -1 when
	// the response has none.
	ContentLength int64
	// CloseConn is true when the backend will close the connection after
	// this response (Connection: close); false means it keeps it open.
	CloseConn bool
}

// Body is how a response body is delimited. The zero value is BodyNone.
type Body uint8

// The ways a response body is delimited.
const (
	BodyNone    Body = iota // HEAD, 1xx, 204, 304: no body whatever the fields say
	BodyLength              // Content-Length bytes
	BodyChunked             // chunked transfer coding
	BodyClose               // until the backend closes the connection
)

// ParseResp parses head, a whole response head (HeadEnd delimits it),
// to a request whose method is HEAD when isHead is true, into r. It
// reports false for what the fast path does not relay itself: a version
// other than HTTP/1.1 or HTTP/1.0, a malformed status line or field, a
// Transfer-Encoding other than exactly "chunked", Content-Length repeated
// or not a number, both Content-Length and Transfer-Encoding (a response a
// proxy must not pass on: RFC 9112 §6.1), 101 Switching Protocols. The
// caller answers 502 for those, as net/http's Transport would.
func ParseResp(head []byte, isHead bool, r *Resp) bool {
	*r = Resp{Fields: r.Fields[:0], ContentLength: -1}
	line, rest, ok := cutCRLF(head)
	if !ok {
		return false
	}
	var h respHead
	if !r.statusLine(line, &h) {
		return false
	}
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			if len(rest) != 0 {
				return false
			}
			break
		}
		name, value, ok := cutField(line)
		if !ok || !r.field(name, value, &h) {
			return false
		}
		r.Fields = append(r.Fields, Field{name, value})
	}
	return r.delimit(isHead, h)
}

// respHead is what ParseResp notes from a head besides what Resp holds.
type respHead struct {
	http10    bool // the status line says HTTP/1.0
	chunked   bool // Transfer-Encoding: chunked
	keepAlive bool // a Connection field has the keep-alive option
}

// statusLine parses the status line into r.Status and r.Reason, and notes
// its version in h. It reports false for a version other than HTTP/1.1 or
// HTTP/1.0, a malformed line, a status under 100, and 101.
func (r *Resp) statusLine(line []byte, h *respHead) bool {
	if len(line) < 12 || line[8] != ' ' {
		return false
	}
	switch string(line[:8]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false
		}
	}
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 || r.Status == 101 || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	if len(line) > 13 {
		r.Reason = line[13:]
	}
	return fieldText(r.Reason)
}

// field takes note of the fields that frame the response or say whether
// the backend keeps the connection, in r and h, and reports whether the
// response stays in the fast path's subset.
func (r *Resp) field(name, value []byte, h *respHead) bool {
	switch {
	case EqualFold(name, "content-length"):
		n, ok := parseContentLength(value)
		if !ok || r.ContentLength >= 0 || n > 1<<50 {
			return false
		}
		r.ContentLength = int64(n)
	case EqualFold(name, "transfer-encoding"):
		if h.chunked || !EqualFold(value, "chunked") {
			return false
		}
		h.chunked = true
	case EqualFold(name, "connection"):
		closeConn, keepAlive, ok := connectionOptions(value)
		if !ok {
			return false // names other fields as hop-by-hop: not relayed here
		}
		r.CloseConn = r.CloseConn || closeConn
		h.keepAlive = h.keepAlive || keepAlive
	}
	return true
}

// delimit sets r.Body, and r.CloseConn where the version or the framing
// implies it, once every field has been read (RFC 9112 §6.3). It reports
// false for both Content-Length and chunked, and for chunked in HTTP/1.0.
func (r *Resp) delimit(isHead bool, h respHead) bool {
	if h.chunked && r.ContentLength >= 0 {
		return false
	}
	if h.http10 && !h.keepAlive {
		r.CloseConn = true
	}
	switch {
	case isHead || r.Status < 200 || r.Status == 204 || r.Status == 304:
		r.Body = BodyNone
	case h.chunked && !h.http10:
		r.Body = BodyChunked
	case h.chunked:
		return false // chunked in HTTP/1.0: not relayed here
	case r.ContentLength >= 0:
		r.Body = BodyLength
	default:
		r.Body = BodyClose
		r.CloseConn = true
	}
	return true
}
