package controller

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/postern-dev/postern/proxy/route"
)

// AnnotationRequestHeaders edits the request head sent to the backends
// of an Ingress: one edit a line, applied in order,
//
//	set X-Env: production
//	add X-Client: $remote_addr
//	remove X-Debug
//
// values with nginx variables ($host, $remote_addr, $http_<name>...).
// It is what ingress-nginx users wrote proxy_set_header and
// more_set_input_headers snippets for.
const AnnotationRequestHeaders = "postern.dev/request-headers"

// AnnotationResponseHeaders edits every response head an Ingress's routes
// send to the client, the routes' own answers (redirects, 413) included,
// in the syntax of AnnotationRequestHeaders: what more_set_headers,
// add_header and proxy_hide_header snippets did (security headers,
// "remove X-Powered-By").
const AnnotationResponseHeaders = "postern.dev/response-headers"

// maxHeaderEdits bounds the edits of one annotation.
const maxHeaderEdits = 64

// forbiddenEditFields are the fields a header edit may not touch: they
// frame the message or belong to one hop, and the proxy owns them (the
// Host sent upstream is upstream-vhost's).
var forbiddenEditFields = []string{
	"Connection", "Content-Length", "Host", "Keep-Alive", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// parseHeaderEdits parses the lines of AnnotationRequestHeaders or
// AnnotationResponseHeaders.
func parseHeaderEdits(v string) (*route.HeaderEdits, error) {
	var edits route.HeaderEdits
	for n, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseHeaderEdit(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if len(edits) == maxHeaderEdits {
			return nil, fmt.Errorf("more than %d edits", maxHeaderEdits)
		}
		edits = append(edits, e)
	}
	if len(edits) == 0 {
		return nil, errors.New(`want lines "set Name: value", "add Name: value" or "remove Name"`)
	}
	return &edits, nil
}

// parseHeaderEdit parses one line: "set Name: value", "add Name: value"
// or "remove Name".
func parseHeaderEdit(line string) (route.HeaderEdit, error) {
	verb, rest, _ := strings.Cut(line, " ")
	op := route.HeaderOp(strings.ToLower(verb))
	rest = strings.TrimSpace(rest)
	var e route.HeaderEdit
	switch op {
	case route.HeaderRemove:
		e = route.HeaderEdit{Op: op, Name: rest}
	case route.HeaderSet, route.HeaderAdd:
		name, value, ok := strings.Cut(rest, ":")
		if !ok {
			return e, fmt.Errorf("%s needs \"Name: value\"", op)
		}
		t, err := route.ParseTemplate(strings.TrimSpace(value), false)
		if err != nil {
			return e, err
		}
		e = route.HeaderEdit{Op: op, Name: strings.TrimSpace(name), Value: t}
	default:
		return e, fmt.Errorf("unknown edit %s (want set, add or remove)", quoteShort(verb))
	}
	name, err := editName(e.Name)
	e.Name = name
	return e, err
}

// editName returns name in canonical form if a header edit may touch
// it: a token, and not one of the proxy's own fields.
func editName(name string) (string, error) {
	if !isToken(name) {
		return name, fmt.Errorf("%s is not a header name", quoteShort(name))
	}
	name = http.CanonicalHeaderKey(name)
	if slices.Contains(forbiddenEditFields, name) {
		return name, fmt.Errorf("%s is the proxy's own field and cannot be edited", name)
	}
	return name, nil
}
