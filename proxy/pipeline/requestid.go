package pipeline

import (
	"encoding/hex"
	"math/rand/v2"
	"strings"
)

// HeaderRequestID is the header that carries a request's ID: kept from the
// client when valid, generated otherwise, sent to the backend and returned
// to the client. The spelling is the canonical form net/http keys headers
// by.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLen bounds a client's request ID; a longer one is replaced,
// so that a client cannot make every log line and backend header large.
const maxRequestIDLen = 200

// validRequestID reports whether id, sent by a client, may be kept: 1 to
// maxRequestIDLen printable ASCII characters, no spaces. Anything else
// (control characters, which could forge log lines, or non-ASCII) is
// replaced by a generated ID.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes as 32 lower-case hex digits. The
// bytes come from math/rand/v2's global source: a ChaCha8 generator per
// thread, seeded by the OS, so IDs are unpredictable and generating one
// takes no lock. They identify requests; they are not secrets.
func newRequestID() string {
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	var s [32]byte
	hex.Encode(s[:], b[:])
	return string(s[:])
}

// requestID is the listener policy that gives every request its ID, and
// sends it to the endpoint and back to the client.
type requestID struct{}

func (requestID) Request(x *Exchange) {
	v, n := x.In.Header(HeaderRequestID)
	if n == 1 && validRequestID(v) {
		x.ID = strings.Clone(v) // kept past the head's buffer: the response and the log need it
	} else {
		x.ID = newRequestID()
	}
	x.Req.Set(HeaderRequestID, x.ID)
	x.Resp.Set(HeaderRequestID, x.ID)
}
