package proxy

import (
	"bytes"
	"net/http"
	"net/url"
	"unsafe"

	"github.com/postern-dev/postern/proxy/internal/h1"
	"github.com/postern-dev/postern/proxy/pipeline"
)

// h1In is a request head the engine parsed, as the pipeline reads it.
// Its strings point into the connection's read buffer (view) except the
// host, which is copied once (the access log and metrics keep it): they
// are valid until the engine reads the client again, which is what
// pipeline.Head asks for.
type h1In struct {
	head   *h1.Head
	method string // a constant for RFC 9110's methods
	host   string // copied
	path   string // decoded; a view unless it had escapes
	uri    string // the target, a view
	query  string // a view
}

var _ pipeline.Head = (*h1In)(nil)

// reset points in at head for its request. It reports false for a target
// whose path net/http would refuse (a malformed percent-escape).
func (in *h1In) reset(head *h1.Head) bool {
	in.head = head
	in.method = methodString(head.Method)
	in.host = string(head.Host)
	target := head.Target
	path, query := target, []byte(nil)
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
	}
	in.uri, in.query = view(target), view(query)
	in.path = view(path)
	if bytes.IndexByte(path, '%') >= 0 {
		// Routing wants the decoded path, as net/http's URL.Path has it.
		p, err := url.PathUnescape(in.path)
		if err != nil {
			return false
		}
		in.path = p
	}
	return true
}

func (in *h1In) Method() string     { return in.method }
func (in *h1In) Host() string       { return in.host }
func (in *h1In) Path() string       { return in.path }
func (in *h1In) RequestURI() string { return in.uri }
func (in *h1In) RawQuery() string   { return in.query }

func (in *h1In) Header(name string) (string, int) {
	var first []byte
	n := 0
	for _, f := range in.head.Fields {
		if h1.SameName(f.Name, name) {
			if n == 0 {
				first = f.Value
			}
			n++
		}
	}
	return view(first), n
}

func (in *h1In) Values(name string, f func(string) bool) {
	for _, fl := range in.head.Fields {
		if h1.SameName(fl.Name, name) && !f(view(fl.Value)) {
			return
		}
	}
}

func (in *h1In) Fields(f func(name, value string) bool) {
	for _, fl := range in.head.Fields {
		if !f(view(fl.Name), view(fl.Value)) {
			return
		}
	}
}

func (in *h1In) ContentLength() int64 {
	switch {
	case in.head.Chunked:
		return -1
	case in.head.ContentLength < 0:
		return 0
	}
	return in.head.ContentLength
}

// view returns b as a string without copying it: valid while b's bytes
// are (see h1In).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// methodString returns method as a string, without allocating for the
// methods of RFC 9110.
func methodString(method []byte) string {
	for _, m := range knownMethods {
		if string(method) == m {
			return m
		}
	}
	return string(method)
}

var knownMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}
