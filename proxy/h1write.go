package proxy

import (
	"bufio"
	"net/http"
	"strconv"
	"time"

	"github.com/postern-dev/postern/proxy/internal/h1"
	"github.com/postern-dev/postern/proxy/pipeline"
	"github.com/postern-dev/postern/proxy/upstream"
)

// writeRequestHead writes the request line and fields of ex's request to
// up, without the hop-by-hop fields and with the request edits applied:
// the fields an edit sets or deletes are dropped, then the values the
// edits set or add are written (the request ID, the forwarding fields).
func (e *h1Engine) writeRequestHead(up *upstream.Conn, ex *h1Exchange) {
	head, edits := ex.head, &ex.x.Req
	w := out{up.W}
	w.bytes(head.Method)
	w.str(" ")
	if t := ex.x.Target; t != "" {
		w.str(t)
	} else {
		w.bytes(head.Target)
	}
	w.str(" HTTP/1.1\r\n")
	vhost := ex.x.UpstreamHost
	for _, f := range head.Fields {
		if hopByHop(f.Name) || drops(edits, f.Name) || (vhost != "" && h1.EqualFold(f.Name, "host")) {
			continue
		}
		w.field(f)
	}
	if vhost != "" {
		w.str("Host: ")
		w.str(vhost)
		w.str("\r\n")
	}
	if head.Chunked {
		w.str("Transfer-Encoding: chunked\r\n")
	}
	w.edits(edits, 0)
	w.str("\r\n")
}

// writeResponseHead writes the status line and fields of ex.resp to the
// client, without the hop-by-hop fields, with the response edits applied
// to a final response, and the framing the engine relays the body with.
func (e *h1Engine) writeResponseHead(ex *h1Exchange, keep bool) {
	resp, edits := ex.resp, &ex.x.Resp
	o := out{ex.cc.bw}
	o.str("HTTP/1.1 ")
	o.str(strconv.Itoa(resp.Status))
	o.str(" ")
	o.bytes(resp.Reason)
	o.str("\r\n")
	for _, f := range resp.Fields {
		if hopByHop(f.Name) {
			// The Trailer announcement stays with a chunked body, whose
			// trailer section is relayed as it is (net/http's
			// ReverseProxy announces the trailers it passes on too).
			if resp.Body != h1.BodyChunked || !h1.EqualFold(f.Name, "trailer") {
				continue
			}
		}
		if drops(edits, f.Name) {
			continue
		}
		if rw := ex.x.RespRewrite; rw != nil && rewritable(f.Name) {
			if v, ok := pipeline.RewriteResponseField(rw, string(f.Name), string(f.Value)); ok {
				o.bytes(f.Name)
				o.str(": ")
				o.str(v)
				o.str("\r\n")
				continue
			}
		}
		o.field(f)
	}
	if resp.Status >= 200 {
		o.edits(edits, resp.Status)
		switch {
		case resp.Body == h1.BodyChunked:
			o.str("Transfer-Encoding: chunked\r\n")
		case !keep:
			o.str("Connection: close\r\n")
		}
	}
	o.str("\r\n")
}

// writeReply writes a local answer, with the response edits applied, and
// returns the bytes of its body written (none for HEAD).
func (e *h1Engine) writeReply(ex *h1Exchange, r *pipeline.Reply, keep bool) int64 {
	o := out{ex.cc.bw}
	o.str("HTTP/1.1 ")
	o.str(strconv.Itoa(r.Status))
	o.str(" ")
	o.str(http.StatusText(r.Status))
	o.str("\r\n")
	for _, f := range r.Fields {
		if f.Applies(r.Status) {
			o.edit(f)
		}
	}
	o.edits(&ex.x.Resp, r.Status)
	o.str("Date: ")
	o.str(time.Now().UTC().Format(http.TimeFormat))
	if !keep {
		o.str("\r\nConnection: close")
	}
	o.str("\r\nContent-Length: ")
	o.str(strconv.Itoa(len(r.Body)))
	o.str("\r\n\r\n")
	if ex.x.In.Method() == http.MethodHead {
		return 0
	}
	o.str(r.Body)
	return int64(len(r.Body))
}

// rewritable reports whether name is a field pipeline.RewriteResponseField
// may change.
func rewritable(name []byte) bool {
	return h1.EqualFold(name, "location") || h1.EqualFold(name, "refresh") || h1.EqualFold(name, "set-cookie")
}

// drops reports whether e sets or deletes the field name, so that the
// fields of that name the head had are not written (pipeline.Edits.Drops
// for a name the engine holds as bytes).
func drops(e *pipeline.Edits, name []byte) bool {
	for _, ed := range e.All() {
		if ed.Drops() && h1.SameName(name, ed.Name) {
			return true
		}
	}
	return false
}

// out writes to a bufio.Writer, whose error is sticky: it is checked once,
// at the Flush that follows.
type out struct{ w *bufio.Writer }

func (o out) str(s string)   { _, _ = o.w.WriteString(s) }
func (o out) bytes(b []byte) { _, _ = o.w.Write(b) }

func (o out) field(f h1.Field) {
	o.bytes(f.Name)
	o.str(": ")
	o.bytes(f.Value)
	o.str("\r\n")
}

// edit writes the field of a Set or Add edit.
func (o out) edit(ed pipeline.Edit) {
	if ed.Op == pipeline.Del {
		return
	}
	o.str(ed.Name)
	o.str(": ")
	o.str(ed.Value)
	o.str("\r\n")
}

// edits writes the fields the edits set or add to a head of status (0:
// a request).
func (o out) edits(e *pipeline.Edits, status int) {
	for _, ed := range e.All() {
		if ed.Applies(status) {
			o.edit(ed)
		}
	}
}

// hopByHop reports whether a field is hop-by-hop (RFC 9110 §7.6.1), or
// framing the engine writes itself.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return h1.EqualFold(name, "te")
	case 7:
		return h1.EqualFold(name, "upgrade") || h1.EqualFold(name, "trailer")
	case 10:
		return h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive")
	case 16:
		return h1.EqualFold(name, "proxy-connection")
	case 17:
		return h1.EqualFold(name, "transfer-encoding")
	case 18:
		return h1.EqualFold(name, "proxy-authenticate")
	case 19:
		return h1.EqualFold(name, "proxy-authorization")
	}
	return false
}
