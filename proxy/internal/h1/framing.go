package h1

// Framing follows the HTTP/1.1 message framing of the requests on one
// connection, byte for byte as the connection is read, to judge what Go's
// server cannot show a handler: Go drops a Content-Length that comes with
// "Transfer-Encoding: chunked" (net/http/transfer.go fixLength) and joins
// folded header lines, so by the time ServeHTTP runs the evidence of a
// request-smuggling attempt is gone.
//
// For every request header section it reads, Framing queues a Verdict. A
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
// fails the body (BodyBroken) like a malformed chunk size. Whenever it
// meets input Go might reject or read differently, it stops judging and
// every later verdict is bad ("broken"): it never guesses, it fails
// closed. It is at least as strict as Go, so it can only turn a request Go
// would serve into a 400, never let through one Go frames differently.
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

// Verdict is Framing's judgement of one request.
type Verdict struct {
	// Line is the FNV-1a hash of "method SP request-target"
	// (RequestLineHash): the handler checks it against the request it
	// serves, so that a verdict is never applied to another request.
	Line uint64
	// Host is the FNV-1a hash of the Host field's value, in lower case
	// (HostHash); HostState says whether there was one (zero when not).
	Host      uint64
	HostState HostState
	// Bad is true when the request's framing is ambiguous, or the parser
	// gave up before it: the request must be refused. False means sound.
	Bad bool
}

// HostState is what Framing saw of a request's Host field. The zero value
// is HostNone.
type HostState uint8

// What Framing saw of a Host field.
const (
	HostNone HostState = iota // no Host field
	HostSeen                  // one, hashed in Verdict.Host
	HostLong                  // longer than maxFieldPeek: not hashed
)

// Framing is the parser. Its zero value is ready to Feed. It is not safe
// for concurrent use (the proxy's conn locks it).
type Framing struct {
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
	hostState HostState

	remaining uint64 // body or chunk bytes left
	excess    int64  // Go's chunk overhead accounting
	trailer   int    // trailer bytes so far

	queue []Verdict
	head  int

	judged     uint64 // verdicts queued so far
	taken      uint64 // verdicts taken so far (Next)
	brokenBody uint64 // the number (1-based) of the request whose body broke the parser; 0 for none
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// RequestLineHash returns the hash Framing computes for a request line
// whose method and request-target are these (Verdict.Line).
func RequestLineHash(method, target string) uint64 {
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

func (f *Framing) reset() {
	f.state = stRequestLine
	f.rlPart, f.rlHash, f.nVersion = 0, fnvOffset, 0
	f.line, f.lineLen = f.line[:0], 0
	f.http10, f.versionOK = false, false
	f.nCL, f.nTE, f.cl, f.clBad, f.teBad, f.folded = 0, 0, 0, false, false, false
	f.host, f.hostState = 0, HostNone
	f.remaining, f.excess, f.trailer = 0, 0, 0
}

// Feed advances the parser over p, the next bytes read from the connection.
func (f *Framing) Feed(p []byte) {
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
func (f *Framing) skip(p []byte) []byte {
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
func (f *Framing) collect(p []byte, keep int) (rest []byte, done bool) {
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
func (f *Framing) requestLine(p []byte) []byte {
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

func (f *Framing) endRequestLine() {
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
func (f *Framing) headerLine() {
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
	case EqualFold(name, "content-length"):
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
	case EqualFold(name, "transfer-encoding"):
		f.nTE++
		if !full || !EqualFold(trimSpace(l[colon+1:]), "chunked") {
			f.teBad = true
		}
	case EqualFold(name, "host"):
		// Go refuses a second Host field itself.
		f.hostState = HostLong
		if full {
			f.hostState, f.host = HostSeen, HostHash(trimSpace(l[colon+1:]))
		}
	}
}

// HostHash returns the FNV-1a hash of host in lower case (ASCII), as
// Framing computes it for Verdict.Host.
func HostHash[T string | []byte](host T) uint64 {
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
func (f *Framing) judge() {
	bad := !f.versionOK || f.folded || f.clBad || f.teBad || f.nTE > 1 ||
		(f.nTE > 0 && (f.nCL > 0 || f.http10))
	if len(f.queue)-f.head >= maxQueued {
		f.state = stBroken
		return
	}
	f.queue = append(f.queue, Verdict{Line: f.rlHash, Host: f.host, HostState: f.hostState, Bad: bad})
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

// Next removes and returns the oldest queued verdict; ok is false when none
// is queued.
func (f *Framing) Next() (v Verdict, ok bool) {
	if f.head == len(f.queue) {
		return Verdict{}, false
	}
	v = f.queue[f.head]
	f.head++
	f.taken++
	if f.head == len(f.queue) {
		f.queue, f.head = f.queue[:0], 0
	}
	return v, true
}

// Taken returns how many verdicts Next has returned: the number (1-based)
// of the last one, which BodyBroken asks about.
func (f *Framing) Taken() uint64 { return f.taken }
