package controller

import (
	"errors"
	"slices"
	"strings"
)

// NginxStatus is how Postern serves an ingress-nginx annotation.
type NginxStatus string

// The statuses of ingress-nginx annotations, as `postern migrate` reports
// them and the README's compatibility table lists them.
const (
	// NginxSupported: served as ingress-nginx serves it.
	NginxSupported NginxStatus = "supported"
	// NginxPartial: served, with a difference the note states.
	NginxPartial NginxStatus = "partial"
	// NginxIgnored: accepted and without effect; nothing is needed in
	// Postern (nginx tuning, or what Postern always does).
	NginxIgnored NginxStatus = "ignored"
	// NginxUnsupported: an Ingress that sets it is not served as written:
	// its paths answer 503 with a Warning Event (fail closed).
	NginxUnsupported NginxStatus = "unsupported"
	// NginxUnknown: not an ingress-nginx annotation; ignored, as
	// ingress-nginx ignores it.
	NginxUnknown NginxStatus = "unknown"
)

// rowKind is what an invalid value of an annotation does (the issue's
// rule, stricter than ingress-nginx's three outcomes where routing or
// access is at stake): a routing or access annotation that cannot be
// honoured as written makes the Ingress's paths answer 503; a tuning one
// falls back to its default. Either way a Problem says so.
type rowKind uint8

const (
	kindRouting rowKind = iota
	kindAccess
	kindTuning
)

// NginxAnnotation is one ingress-nginx annotation and how Postern serves
// it.
type NginxAnnotation struct {
	// Name is the annotation without its prefix ("rewrite-target").
	Name string `json:"name"`
	// Alias is another name ingress-nginx accepts for it; the canonical
	// Name wins when both are set. Empty: none.
	Alias string `json:"alias,omitempty"`
	// Status is how Postern serves it.
	Status NginxStatus `json:"status"`
	// Note is the caveat, or what it does in Postern; may be empty.
	Note string `json:"note,omitempty"`
}

// nginxRow is one row of the controller's ingress-nginx annotation table:
// the annotation, its status, and what reads it. Adding an annotation is
// adding a row.
type nginxRow struct {
	NginxAnnotation
	kind rowKind
	// read parses the value into n's configuration; nil for annotations
	// read by another row (a group's first, such as permanent-redirect for
	// permanent-redirect-code) or not read at all. An error is an
	// invalid value; errUnsupported wrapped in it is a value Postern
	// cannot honour (backend-protocol FCGI), which refuses the Ingress.
	read func(v string, n *nginxRead) error
}

// errUnsupported marks a value an annotation accepts in ingress-nginx
// that Postern cannot honour.
var errUnsupported = errors.New("not supported by Postern")

// NginxAnnotations returns the table of every ingress-nginx annotation
// (v1.15.1's parser registry) with its status, sorted by name.
func NginxAnnotations() []NginxAnnotation {
	out := make([]NginxAnnotation, 0, len(nginxTable))
	for _, r := range nginxTable {
		out = append(out, r.NginxAnnotation)
	}
	slices.SortFunc(out, func(a, b NginxAnnotation) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// nginxByName indexes nginxTable by name and alias (filled by init: the
// table's read functions look names up).
var nginxByName map[string]*nginxRow

func init() {
	nginxByName = make(map[string]*nginxRow, len(nginxTable)+4)
	for i := range nginxTable {
		r := &nginxTable[i]
		nginxByName[r.Name] = r
		if r.Alias != "" {
			nginxByName[r.Alias] = r
		}
	}
}

// Notes shared by several rows.
const (
	noteNginxTuning   = "nginx buffer and connection tuning; Postern streams and sizes its buffers itself"
	noteSnippet       = "nginx configuration, which Postern never runs; the Ingress answers 503 until it is removed"
	noteReadWithGroup = "read with "
)

func supported(name string, kind rowKind, note string, read func(string, *nginxRead) error) nginxRow {
	return nginxRow{NginxAnnotation: NginxAnnotation{Name: name, Status: NginxSupported, Note: note}, kind: kind, read: read}
}

func partial(name string, kind rowKind, note string, read func(string, *nginxRead) error) nginxRow {
	return nginxRow{NginxAnnotation: NginxAnnotation{Name: name, Status: NginxPartial, Note: note}, kind: kind, read: read}
}

func ignored(name, note string) nginxRow {
	return nginxRow{NginxAnnotation: NginxAnnotation{Name: name, Status: NginxIgnored, Note: note}, kind: kindTuning}
}

func unsupported(name string, kind rowKind, note string) nginxRow {
	return nginxRow{NginxAnnotation: NginxAnnotation{Name: name, Status: NginxUnsupported, Note: note}, kind: kind}
}

func withAlias(r nginxRow, alias string) nginxRow {
	r.Alias = alias
	return r
}
