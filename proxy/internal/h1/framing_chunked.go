package h1

// How Framing reads a chunked body and its trailer section, and the chunk
// grammar it shares with CopyChunked (validChunkExt, parseHex): the guard
// and the fast path read a chunk-size line the same way.

// chunkSizeLine reads a chunk-size line exactly as Go's chunkedReader does
// (net/http/internal/chunked.go): CRLF-terminated with no other CR, trailing
// whitespace and extensions dropped, 1 to 16 hex digits.
func (f *Framing) chunkSizeLine() {
	l := f.line
	f.line, f.lineLen = f.line[:0], 0
	if len(l) == 0 || l[len(l)-1] != '\r' {
		f.breakBody() // bare LF (Go rejects it since CVE-2025-22871)
		return
	}
	l = l[:len(l)-1]
	for _, c := range l {
		if c == '\r' {
			f.breakBody()
			return
		}
	}
	f.excess += int64(len(l)) + 2
	for len(l) > 0 && (l[len(l)-1] == ' ' || l[len(l)-1] == '\t') {
		l = l[:len(l)-1]
	}
	for i, c := range l {
		if c == ';' {
			if !validChunkExt(l[i:]) {
				f.breakBody()
				return
			}
			l = l[:i]
			break
		}
	}
	n, ok := parseHex(l)
	if !ok {
		f.breakBody()
		return
	}
	f.excess -= 16 + (2 * int64(n)) // the same arithmetic as Go, overflow included
	f.excess = max(f.excess, 0)
	if f.excess > maxChunkExcess {
		f.breakBody()
		return
	}
	if n == 0 {
		f.state = stTrailer
		return
	}
	f.remaining = n
	f.state = stChunkData
}

// breakBody gives up while reading the body of the last request judged:
// that body is malformed (BodyBroken), and every later verdict is bad.
func (f *Framing) breakBody() {
	f.state = stBroken
	f.brokenBody = f.judged
}

// BodyBroken reports whether the body of the request whose verdict was
// taken seq-th (1-based, as Taken counts) was found malformed.
func (f *Framing) BodyBroken(seq uint64) bool {
	return f.brokenBody != 0 && f.brokenBody == seq
}

// validChunkExt reports whether ext, the part of a chunk-size line from
// its first ";" on (trailing whitespace removed), follows RFC 9112 §7.1.1:
//
//	chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-val = token / quoted-string
func validChunkExt(ext []byte) bool {
	i := 0
	bws := func() {
		for i < len(ext) && (ext[i] == ' ' || ext[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		start := i
		for i < len(ext) && isTokenChar(ext[i]) {
			i++
		}
		return i > start
	}
	for {
		bws()
		if i == len(ext) {
			return true
		}
		if ext[i] != ';' {
			return false
		}
		i++
		bws()
		if !token() {
			return false
		}
		bws()
		if i == len(ext) || ext[i] != '=' {
			continue
		}
		i++
		bws()
		switch {
		case i < len(ext) && ext[i] == '"':
			if i = quotedStringEnd(ext, i); i < 0 {
				return false
			}
		case !token():
			return false
		}
	}
}

// quotedStringEnd returns the index just past the quoted-string (RFC 9110
// §5.6.4) that starts at b[i], or -1 when there is none.
func quotedStringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(b) || !isQuotable(b[i]) {
				return -1
			}
		case !isQuotable(c):
			return -1
		}
	}
	return -1
}

// isQuotable reports whether c may stand in a quoted-string, as qdtext or
// after a backslash: HTAB, SP, VCHAR, obs-text.
func isQuotable(c byte) bool { return c == '\t' || (c >= ' ' && c != 0x7f) }

// trailerLine reads one line of the trailer section. Only CRLF-terminated
// "name: value" lines are accepted: on anything else Go either fails or
// depends on what happens to be in its read buffer, so Framing gives up.
func (f *Framing) trailerLine() {
	l := f.line // whole: f.trailer <= maxTrailer
	f.line, f.lineLen = f.line[:0], 0
	if len(l) == 0 || l[len(l)-1] != '\r' {
		f.breakBody()
		return
	}
	l = l[:len(l)-1]
	if len(l) == 0 {
		f.reset() // end of the message
		return
	}
	if !validField(l) {
		f.breakBody()
	}
}

// parseHex parses a chunk size: 1 to 16 hex digits.
func parseHex(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}
