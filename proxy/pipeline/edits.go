package pipeline

import "strings"

// Op is what an Edit does to the header fields of its name.
type Op uint8

// The edits of a head.
const (
	// Set replaces every field of the name with one of the value.
	Set Op = iota
	// Add appends a field, after those of the name already there.
	Add
	// Del removes every field of the name.
	Del
	// AddOK appends a field to a response of a status nginx's add_header
	// (without "always") adds to: 200, 201, 204, 206, 301, 302, 303, 304,
	// 307 and 308; to no other response, and to no request.
	AddOK
)

// Applies reports whether ed changes a head of status (0: a request).
func (ed Edit) Applies(status int) bool {
	if ed.Op != AddOK {
		return true
	}
	switch status {
	case 200, 201, 204, 206, 301, 302, 303, 304, 307, 308:
		return true
	}
	return false
}

// Drops reports whether ed replaces or removes the fields of its name.
func (ed Edit) Drops() bool { return ed.Op == Set || ed.Op == Del }

// Edit is one change to a request or response head.
type Edit struct {
	Op    Op
	Name  string // canonical form (http.CanonicalHeaderKey)
	Value string // empty for Del
}

// Edits are the changes the decision makes to a head, applied by the
// engine as it writes the head (request edits to the endpoint, response
// edits to the client, on every response: proxied, local or an error).
// The zero value is no change. The first few edits take no allocation.
type Edits struct {
	inline [editsInline]Edit
	n      int
	more   []Edit // every edit, once there are more than editsInline
}

const editsInline = 8

// Set replaces the fields named name with one of value.
func (e *Edits) Set(name, value string) { e.add(Edit{Set, name, value}) }

// Add appends a field name: value.
func (e *Edits) Add(name, value string) { e.add(Edit{Add, name, value}) }

// Del removes the fields named name.
func (e *Edits) Del(name string) { e.add(Edit{Op: Del, Name: name}) }

// AddOK appends a field name: value to a response of a status nginx's
// add_header adds to (see the AddOK op).
func (e *Edits) AddOK(name, value string) { e.add(Edit{AddOK, name, value}) }

func (e *Edits) add(ed Edit) {
	switch {
	case e.more != nil:
		e.more = append(e.more, ed)
	case e.n < editsInline:
		e.inline[e.n] = ed
		e.n++
	default:
		e.more = append(append(make([]Edit, 0, 2*editsInline), e.inline[:]...), ed)
	}
}

// All returns the edits in the order they were made.
func (e *Edits) All() []Edit {
	if e.more != nil {
		return e.more
	}
	return e.inline[:e.n]
}

// Len returns the number of edits.
func (e *Edits) Len() int {
	if e.more != nil {
		return len(e.more)
	}
	return e.n
}

// Drops reports whether the fields named name (any case) that the head
// had are dropped: a Set or Del of that name replaces or removes them.
func (e *Edits) Drops(name string) bool {
	for _, ed := range e.All() {
		if ed.Drops() && strings.EqualFold(ed.Name, name) {
			return true
		}
	}
	return false
}

// Reset makes e empty, keeping nothing.
func (e *Edits) Reset() { *e = Edits{} }
