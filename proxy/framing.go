package proxy

import "strings"

// framing follows the HTTP/1.1 message framing of the requests on one
// connection, byte for byte as the connection is read, to judge what Go's
// server cannot show a handler: Go drops a Content-Length that comes with
// "Transfer-Encoding: chunked" (net/http/transfer.go fixLength) and joins
// folded header lines, so by the time ServeHTTP runs the evidence of a
// request-smuggling attempt is gone.
//
// For every request header section it reads, framing queues a verdict. A
// verdict is bad when the request's framing is ambiguous, which RFC 9112
// asks a server to treat as an error:
//   - both Content-Length and Transfer-Encoding (RFC 9112 §6.1: "ought to
//     be handled as an error"; §6.3 item 3);
//   - Transfer-Encoding other than one "chunked" field (§6.3 items 4 and
//     7; Go answers 501 for these itself);
//   - Transfer-Encoding in an HTTP/1.0 request (§6.1: "MUST treat the
//     message as if the framing is faulty");
//   - Content-Length that is not one decimal number, or several that differ
//     (§6.3 item 5; Go answers 400 itself);
//   - obs-fold, a header line continued on the next (§5.2: reject or
//     replace with spaces; Go replaces, which hides a folded
//     Transfer-Encoding from the handler);
//   - a request line Go cannot parse.
//
// It also remembers a hash of each request's Host field, for the guard to
// compare with the authority of an absolute-form request-target.
//
// To stay in step across keep-alive requests it reads each body the way Go
// does: chunked (§7.1, with Go's own limits) when Transfer-Encoding is
// chunked, else Content-Length bytes, else none. It is stricter than Go
// about chunk extensions, which Go drops unread: one that does not follow
// the grammar of RFC 9112 §7.1.1 (a quoted string left open, a control
// character) could end the line elsewhere for a parser in front, so it
// fails the body (bodyBroken) like a malformed chunk size. Whenever it meets input Go
// might reject or read differently, it stops judging and every later
// verdict is bad ("broken"): it never guesses, it fails closed. It is at
// least as strict as Go, so it can only turn a request Go would serve into a
// 400, never let through one Go frames differently.
//
// Memory is bounded: it buffers at most maxChunkLine bytes of a chunk-size
// line and maxFieldPeek bytes of a header line; request lines, long header
// values and bodies are looked at and passed, not kept.

const (
	// maxFieldPeek is how much of a header line is kept: enough for a
	// Content-Length or Transfer-Encoding field with any sane value.
	// Longer fields of those two names are bad; other fields are ignored.
	maxFieldPeek = 256
	// maxChunkLine is the longest chunk-size line (without CRLF) Go reads:
	// the line and its CRLF must fit its 4 KiB bufio.Reader.
	maxChunkLine = 4096 - 2
	// maxTrailer bounds the trailer section of a chunked body; Go requires
	// its end to be in its 4 KiB buffer.
	maxTrailer = 4000
	// maxQueued bounds the verdicts waiting for their handler (pipelined
	// requests read ahead of the one being served).
	maxQueued = 1024
	// maxChunkExcess is Go's limit on chunk overhead beyond the data, after
	// which it rejects the body (net/http/internal/chunked.go).
	maxChunkExcess = 16 * 1024
)

type framingState uint8

const (
	stRequestLine framingState = iota // method SP request-target SP version
	stHeaderLine                      // field lines up to the empty line
	stBody                            // Content-Length bytes
	stChunkSize                       // chunk-size [; ext] CRLF
	stChunkData                       // chunk bytes
	stChunkCR                         // the CR after chunk data
	stChunkLF                         // the LF after chunk data
	stTrailer                         // trailer field lines up to the empty line
	stBroken                          // lost: every later verdict is bad
)

// verdict is framing's judgement of one request.
type verdict struct {
	// line is the FNV-1a hash of "method SP request-target": the handler
	// checks it against the request it serves, so that a verdict is never
	// applied to another request.
	line uint64
	// host is the FNV-1a hash of the Host field's value, in lower case;
	// hostState says whether there was one.
	host      uint64
	hostState hostState
	bad       bool
}

// hostState is what framing saw of a request's Host field.
type hostState uint8

const (
	hostNone hostState = iota // no Host field
	hostSeen                  // one, hashed in verdict.host
	hostLong                  // longer than maxFieldPeek: not hashed
)

// framing is the parser; it is not safe for concurrent use (conn locks it).
type framing struct {
	state   framingState
	started bool

	// The request line.
	rlPart   uint8 // 0 method, 1 target, 2 version
	rlHash   uint64
	version  [10]byte
	nVersion int

	// The line being collected (header, chunk-size or trailer line).
	line    []byte
	lineLen int // full length of the line so far, without LF

	// What the current request's header section said.
	http10    bool
	versionOK bool
	nCL, nTE  int
	cl        uint64
	clBad     bool
	teBad     bool
	folded    bool
	host      uint64
	hostState hostState

	remaining uint64 // body or chunk bytes left
	excess    int64  // Go's chunk overhead accounting
	trailer   int    // trailer bytes so far

	queue []verdict
	head  int

	judged     uint64 // verdicts queued so far
	taken      uint64 // verdicts taken so far (next)
	brokenBody uint64 // the number (1-based) of the request whose body broke the parser; 0 for none
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// requestLineHash returns the hash framing computes for a request line
// whose method and request-target are these.
func requestLineHash(method, target string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(method); i++ {
		h = (h ^ uint64(method[i])) * fnvPrime
	}
	h = (h ^ ' ') * fnvPrime
	for i := 0; i < len(target); i++ {
		h = (h ^ uint64(target[i])) * fnvPrime
	}
	return h
}

func (f *framing) reset() {
	f.state = stRequestLine
	f.rlPart, f.rlHash, f.nVersion = 0, fnvOffset, 0
	f.line, f.lineLen = f.line[:0], 0
	f.http10, f.versionOK = false, false
	f.nCL, f.nTE, f.cl, f.clBad, f.teBad, f.folded = 0, 0, 0, false, false, false
	f.host, f.hostState = 0, hostNone
	f.remaining, f.excess, f.trailer = 0, 0, 0
}

// feed advances the parser over p, the next bytes read from the connection.
func (f *framing) feed(p []byte) {
	if !f.started {
		f.started = true
		f.reset()
	}
	for len(p) > 0 {
		switch f.state {
		case stBroken:
			return
		case stRequestLine:
			p = f.requestLine(p)
		case stHeaderLine:
			var done bool
			if p, done = f.collect(p, maxFieldPeek); done {
				f.headerLine()
			}
		case stBody:
			p = f.skip(p)
			if f.remaining == 0 {
				f.reset()
			}
		case stChunkSize:
			var done bool
			p, done = f.collect(p, maxChunkLine+1)
			switch {
			case f.lineLen > maxChunkLine+1:
				f.breakBody() // Go: "header line too long"
			case done:
				f.chunkSizeLine()
			}
		case stChunkData:
			p = f.skip(p)
			if f.remaining == 0 {
				f.state = stChunkCR
			}
		case stChunkCR, stChunkLF:
			want := byte('\r')
			if f.state == stChunkLF {
				want = '\n'
			}
			if p[0] != want {
				f.breakBody() // Go: "malformed chunked encoding"
				return
			}
			p = p[1:]
			if f.state == stChunkCR {
				f.state = stChunkLF
			} else {
				f.state = stChunkSize
			}
		case stTrailer:
			n := len(p)
			var done bool
			p, done = f.collect(p, maxTrailer)
			f.trailer += n - len(p)
			if f.trailer > maxTrailer {
				f.breakBody()
			} else if done {
				f.trailerLine()
			}
		}
	}
}

// skip passes over up to f.remaining bytes of p.
func (f *framing) skip(p []byte) []byte {
	n := uint64(len(p))
	if n > f.remaining {
		n = f.remaining
	}
	f.remaining -= n
	return p[n:]
}

// collect adds the bytes of p up to the next LF to the current line,
// keeping at most keep of them. done reports that the line is complete (its
// LF consumed, not kept).
func (f *framing) collect(p []byte, keep int) (rest []byte, done bool) {
	i := indexLF(p)
	seg := p
	if i >= 0 {
		seg = p[:i]
	}
	f.lineLen += len(seg)
	if room := keep - len(f.line); room > 0 {
		f.line = append(f.line, seg[:min(room, len(seg))]...)
	}
	if i < 0 {
		return nil, false
	}
	return p[i+1:], true
}

func indexLF(p []byte) int {
	for i, c := range p {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// requestLine hashes the method and request-target and keeps the version,
// splitting at the first two spaces as Go's parseRequestLine does.
func (f *framing) requestLine(p []byte) []byte {
	for i, c := range p {
		if c == '\n' {
			f.endRequestLine()
			return p[i+1:]
		}
		switch {
		case f.rlPart < 2 && c == ' ':
			f.rlPart++
			if f.rlPart == 1 {
				f.rlHash = (f.rlHash ^ ' ') * fnvPrime
			}
		case f.rlPart < 2:
			f.rlHash = (f.rlHash ^ uint64(c)) * fnvPrime
		case f.nVersion < len(f.version):
			f.version[f.nVersion] = c
			f.nVersion++
		default:
			f.nVersion = len(f.version) + 1 // too long to be a version
		}
	}
	return nil
}

func (f *framing) endRequestLine() {
	v := f.version[:min(f.nVersion, len(f.version))]
	if f.nVersion > len(f.version) {
		v = nil
	}
	// bufio.Reader.ReadLine drops the CR of a CRLF.
	if len(v) > 0 && v[len(v)-1] == '\r' {
		v = v[:len(v)-1]
	}
	// Go's server serves HTTP/1.x only (http1ServerSupportsRequest); any
	// other version is answered and the connection closed.
	f.versionOK = f.rlPart == 2 && len(v) == 8 && string(v[:7]) == "HTTP/1." && '0' <= v[7] && v[7] <= '9'
	f.http10 = f.versionOK && v[7] == '0'
	f.state = stHeaderLine
	if !f.versionOK {
		f.judge() // bad: Go answers 400 and closes
	}
}

// headerLine looks at one complete field line of the header section.
func (f *framing) headerLine() {
	l := f.line
	full := f.lineLen <= len(l)
	if full && len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	f.line, f.lineLen = f.line[:0], 0
	if full && len(l) == 0 {
		f.judge()
		return
	}
	if l[0] == ' ' || l[0] == '\t' {
		f.folded = true // obs-fold (RFC 9112 §5.2), or whitespace before the first field
		return
	}
	colon := -1
	for i, c := range l {
		if c == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return // not one of ours (Go rejects a line without a colon)
	}
	name := l[:colon]
	switch {
	case asciiEqualFold(name, "content-length"):
		f.nCL++
		n, ok := parseContentLength(trimSpace(l[colon+1:]))
		switch {
		case !ok || !full:
			f.clBad = true
		case f.nCL == 1:
			f.cl = n
		case n != f.cl:
			f.clBad = true
		}
	case asciiEqualFold(name, "transfer-encoding"):
		f.nTE++
		if !full || !asciiEqualFold(trimSpace(l[colon+1:]), "chunked") {
			f.teBad = true
		}
	case asciiEqualFold(name, "host"):
		// Go refuses a second Host field itself.
		f.hostState = hostLong
		if full {
			f.hostState, f.host = hostSeen, hostHash(trimSpace(l[colon+1:]))
		}
	}
}

// hostHash returns the FNV-1a hash of host in lower case (ASCII).
func hostHash[T string | []byte](host T) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

// judge queues the verdict of the request whose header section just ended
// and sets up reading its body.
func (f *framing) judge() {
	bad := !f.versionOK || f.folded || f.clBad || f.teBad || f.nTE > 1 ||
		(f.nTE > 0 && (f.nCL > 0 || f.http10))
	if len(f.queue)-f.head >= maxQueued {
		f.state = stBroken
		return
	}
	f.queue = append(f.queue, verdict{line: f.rlHash, host: f.host, hostState: f.hostState, bad: bad})
	f.judged++
	switch {
	case bad:
		f.state = stBroken
	case f.nTE == 1:
		f.line, f.lineLen = f.line[:0], 0
		f.state = stChunkSize
	case f.cl > 0:
		f.remaining = f.cl
		f.state = stBody
	default:
		f.reset()
	}
}

// chunkSizeLine reads a chunk-size line exactly as Go's chunkedReader does
// (net/http/internal/chunked.go): CRLF-terminated with no other CR, trailing
// whitespace and extensions dropped, 1 to 16 hex digits.
func (f *framing) chunkSizeLine() {
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
// that body is malformed (bodyBroken), and every later verdict is bad.
func (f *framing) breakBody() {
	f.state = stBroken
	f.brokenBody = f.judged
}

// bodyBroken reports whether the body of the request whose verdict was
// taken seq-th (1-based) was found malformed.
func (f *framing) bodyBroken(seq uint64) bool {
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
// depends on what happens to be in its read buffer, so framing gives up.
func (f *framing) trailerLine() {
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

// validField reports whether l is a field line net/textproto accepts: a
// token, a colon, and a value of visible characters, spaces and tabs (RFC
// 9110 §5.1, §5.5). Leading whitespace would be obs-fold.
func validField(l []byte) bool {
	colon := -1
	for i, c := range l {
		if c == ':' {
			colon = i
			break
		}
		if !isTokenChar(c) {
			return false
		}
	}
	if colon <= 0 {
		return false
	}
	for _, c := range l[colon+1:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

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

// trimSpace trims what net/textproto trims around a field value.
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

// asciiEqualFold compares b with the lower-case ASCII s ignoring ASCII case
// only, as Go does for these names and values (bytes.EqualFold would also
// fold U+017F to 's' and U+212A to 'k').
func asciiEqualFold(b []byte, s string) bool {
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

// next removes and returns the oldest queued verdict; ok is false when none
// is queued.
func (f *framing) next() (v verdict, ok bool) {
	if f.head == len(f.queue) {
		return verdict{}, false
	}
	v = f.queue[f.head]
	f.head++
	f.taken++
	if f.head == len(f.queue) {
		f.queue, f.head = f.queue[:0], 0
	}
	return v, true
}
