package pipeline

import (
	"net/http"
	"strings"
)

// testHead is a request head for the pipeline's tests.
type testHead struct {
	method, host, path, uri, query string
	header                         http.Header
	contentLength                  int64
}

var _ Head = (*testHead)(nil)

func (h *testHead) Method() string {
	if h.method == "" {
		return http.MethodGet
	}
	return h.method
}
func (h *testHead) Host() string { return h.host }
func (h *testHead) Path() string {
	if h.path == "" {
		return "/"
	}
	return h.path
}
func (h *testHead) RawQuery() string { return h.query }
func (h *testHead) RequestURI() string {
	if h.uri != "" {
		return h.uri
	}
	if h.query != "" {
		return h.Path() + "?" + h.query
	}
	return h.Path()
}
func (h *testHead) Header(name string) (string, int) {
	v := h.header[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}
func (h *testHead) Values(name string, f func(string) bool) {
	for _, v := range h.header[name] {
		if !f(v) {
			return
		}
	}
}
func (h *testHead) Fields(f func(name, value string) bool) {
	for name, vs := range h.header {
		for _, v := range vs {
			if !f(name, v) {
				return
			}
		}
	}
}
func (h *testHead) ContentLength() int64 { return h.contentLength }

// header returns the Set or Add values of name in e, joined by "|".
func editedValues(e *Edits, name string) string {
	var vals []string
	for _, ed := range e.All() {
		if ed.Name == name && ed.Op != Del {
			vals = append(vals, ed.Value)
		}
	}
	return strings.Join(vals, "|")
}
