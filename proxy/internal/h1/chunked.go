package h1

import (
	"bufio"
	"errors"
	"io"
)

// errChunked is the error of a chunked body that does not follow RFC 9112
// §7.1: the copy stops there, and the caller cuts both connections.
var errChunked = errors.New("malformed chunked body")

// ErrTooLarge is the error of a chunked body whose payload passes the
// limit CopyChunked was given: the copy stops before the chunk that
// would pass it, and the caller answers 413.
var ErrTooLarge = errors.New("chunked body larger than the limit")

// CopyChunked relays a chunked body from src to dst byte for byte (the
// chunk sizes, extensions and trailer fields as the sender wrote them),
// checking its syntax as it goes. It flushes dst whenever src has nothing
// buffered, so a stream (server-sent events, a long poll) reaches the
// client as it is produced. It returns the payload bytes relayed (the
// chunks' data, without the framing). A limit above zero bounds the
// payload: a chunk that would pass it is not relayed (ErrTooLarge).
func CopyChunked(dst *bufio.Writer, src *bufio.Reader, limit int64) (int64, error) {
	var payload int64
	for {
		line, err := readLine(src)
		if err != nil {
			return payload, err
		}
		size, ok := parseChunkSizeLine(line)
		if !ok {
			return payload, errChunked
		}
		if limit > 0 && size > limit-payload {
			return payload, ErrTooLarge
		}
		if _, err := dst.Write(line); err != nil {
			return payload, err
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return payload, err
		}
		if size == 0 {
			return payload, copyTrailer(dst, src)
		}
		for size > 0 {
			if src.Buffered() == 0 {
				if err := dst.Flush(); err != nil {
					return payload, err
				}
			}
			n, err := io.CopyN(dst, src, min(size, int64(src.Size())))
			payload += n
			size -= n
			if err != nil {
				return payload, NoEOF(err)
			}
		}
		crlf, err := src.Peek(2)
		if err != nil {
			return payload, NoEOF(err)
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return payload, errChunked
		}
		_, _ = src.Discard(2)
		if _, err := dst.WriteString("\r\n"); err != nil {
			return payload, err
		}
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return payload, err
			}
		}
	}
}

// copyTrailer relays the trailer section after the last chunk, through
// the empty line that ends the body.
func copyTrailer(dst *bufio.Writer, src *bufio.Reader) error {
	total := 0
	for {
		line, err := readLine(src)
		if err != nil {
			return err
		}
		total += len(line) + 2
		if total > maxTrailer {
			return errChunked
		}
		if len(line) > 0 && !validField(line) {
			return errChunked
		}
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return err
		}
		if len(line) == 0 {
			return dst.Flush()
		}
	}
}

// readLine returns the next CRLF-terminated line of src without its CRLF,
// valid until the next read; a line longer than maxChunkLine (a chunk-size
// line or a trailer line: the bound the framing guard and net/http have), a
// bare LF or a CR not followed by LF is errChunked.
func readLine(src *bufio.Reader) ([]byte, error) {
	line, err := src.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxChunkLine+2 {
		return nil, errChunked
	}
	if err != nil {
		return nil, NoEOF(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errChunked
	}
	line = line[:len(line)-2]
	for _, c := range line {
		if c == '\r' {
			return nil, errChunked
		}
	}
	return line, nil
}

// parseChunkSizeLine parses "chunk-size [chunk-ext]" (RFC 9112 §7.1).
func parseChunkSizeLine(line []byte) (int64, bool) {
	i := 0
	for i < len(line) && isHex(line[i]) {
		i++
	}
	if i == 0 || i > 15 { // 15 hex digits: below 2^60, no overflow
		return 0, false
	}
	size, ok := parseHex(line[:i])
	if !ok {
		return 0, false
	}
	// What follows the digits is trailing whitespace or extensions starting with
	// ";" at once: RFC 9112 allows whitespace before the ";", but Go's reader (and
	// Framing, which reads as it does) refuses it, and a line one parser takes and
	// the next one refuses must not be relayed.
	rest := line[i:]
	for len(rest) > 0 && (rest[len(rest)-1] == ' ' || rest[len(rest)-1] == '\t') {
		rest = rest[:len(rest)-1]
	}
	if len(rest) > 0 && (rest[0] != ';' || !validChunkExt(rest)) {
		return 0, false
	}
	return int64(size), true //nolint:gosec // at most 15 hex digits
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// NoEOF turns the end of the input in the middle of a body into
// io.ErrUnexpectedEOF: the body was cut short.
func NoEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
