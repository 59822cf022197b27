package proxy

import "bytes"

// h1Resp is the parsed head of a backend's response on the fast path, as
// slices of the upstream connection's read buffer.
type h1Resp struct {
	status int
	reason []byte
	fields []h1Field
	// body says how the body is delimited (RFC 9112 §6.3).
	body h1Body
	// contentLength is the Content-Length when body is h1BodyLength.
	contentLength int64
	// closeConn is true when the backend will close the connection after
	// this response (Connection: close).
	closeConn bool
}

// h1Body is how a response body is delimited.
type h1Body uint8

const (
	h1BodyNone    h1Body = iota // HEAD, 1xx, 204, 304: no body whatever the fields say
	h1BodyLength                // Content-Length bytes
	h1BodyChunked               // chunked transfer coding
	h1BodyClose                 // until the backend closes the connection
)

// parseH1Resp parses head, a whole response head (h1HeadEnd delimits it),
// to a request whose method is HEAD when head is true. It reports false for
// what the fast path does not relay itself: a version other than HTTP/1.1
// or HTTP/1.0, a malformed status line or field, a Transfer-Encoding other
// than exactly "chunked", Content-Length repeated or not a number, both
// Content-Length and Transfer-Encoding (a response a proxy must not pass
// on: RFC 9112 §6.1), 101 Switching Protocols. The caller answers 502 for
// those, as net/http's Transport would.
func parseH1Resp(head []byte, isHead bool, r *h1Resp) bool {
	*r = h1Resp{fields: r.fields[:0], contentLength: -1}
	line, rest, ok := cutCRLF(head)
	if !ok || len(line) < 12 || line[8] != ' ' {
		return false
	}
	http10 := false
	switch string(line[:8]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		return false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return false
		}
	}
	r.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.status < 100 || r.status == 101 || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	if len(line) > 13 {
		r.reason = line[13:]
	}
	if !fieldText(r.reason) {
		return false
	}
	chunked := false
	keepAlive := false
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
		if !ok {
			return false
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || r.contentLength >= 0 || n > 1<<50 {
				return false
			}
			r.contentLength = int64(n)
		case asciiEqualFold(name, "transfer-encoding"):
			if chunked || !asciiEqualFold(value, "chunked") {
				return false
			}
			chunked = true
		case asciiEqualFold(name, "connection"):
			for _, opt := range bytes.Split(value, []byte(",")) {
				switch opt = trimOWS(opt); {
				case asciiEqualFold(opt, "close"):
					r.closeConn = true
				case asciiEqualFold(opt, "keep-alive"):
					keepAlive = true
				case len(opt) == 0:
				default:
					return false // names other fields as hop-by-hop: not relayed here
				}
			}
		}
		r.fields = append(r.fields, h1Field{name, value})
	}
	if chunked && r.contentLength >= 0 {
		return false
	}
	if http10 && !keepAlive {
		r.closeConn = true
	}
	switch {
	case isHead || r.status < 200 || r.status == 204 || r.status == 304:
		r.body = h1BodyNone
	case chunked && !http10:
		r.body = h1BodyChunked
	case chunked:
		return false // chunked in HTTP/1.0: not relayed here
	case r.contentLength >= 0:
		r.body = h1BodyLength
	default:
		r.body = h1BodyClose
		r.closeConn = true
	}
	return true
}
