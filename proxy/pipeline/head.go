package pipeline

// Head is a request head as an engine read it. Both HTTP/1.1 engines (the
// fast path over its own parse, the net/http adapter over *http.Request)
// implement it without allocating.
//
// Strings a Head returns may point into the engine's read buffer: they
// are valid while the decision is made and the request head is written to
// the endpoint, not after the engine reads the client connection again. A
// policy that keeps one beyond that (in x.Resp, in a cache, in a log
// field) copies it with strings.Clone.
type Head interface {
	// Method is the request method.
	Method() string
	// Host is the Host field (HTTP/1.1) or :authority (HTTP/2), as sent.
	Host() string
	// Path is the request's path, decoded, as routing matches it.
	Path() string
	// RequestURI is the path and query of the request target as sent (an
	// absolute-form target's, for one), or "*" for the asterisk form.
	RequestURI() string
	// RawQuery is the query as sent, without the '?'.
	RawQuery() string
	// Header returns the first value of the header fields named name and
	// how many there are. name is in canonical form, as
	// http.CanonicalHeaderKey writes it; Host is not a header here.
	Header(name string) (value string, n int)
	// Values calls f with each value of the fields named name (canonical
	// form), in order, until f returns false.
	Values(name string, f func(value string) bool)
	// Fields calls f with the name (as sent; canonical form on the
	// net/http engine) and value of each header field, in order, until f
	// returns false.
	Fields(f func(name, value string) bool)
	// ContentLength is the length of the request body: -1 when it is not
	// known ahead (chunked), 0 when there is none.
	ContentLength() int64
}
