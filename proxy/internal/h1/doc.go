// Package h1 reads HTTP/1.1 off the wire for the proxy: request and
// response heads, chunked bodies, and the framing of every request on a
// connection.
//
// It sits below the proxy's engines, like Go's net/http/internal and
// net/textproto sit below net/http: the fast path (proxy/h1engine.go)
// parses the requests it serves with ParseHead, their responses with
// ParseResp and relays chunked bodies with CopyChunked; the framing guard
// (proxy/conn.go) feeds every byte net/http reads to a Framing, which
// judges whether each request's framing is ambiguous (a request-smuggling
// attempt) before the handler runs. It imports only the standard library
// and knows nothing of routes, backends or connections: it parses bytes
// and says what they mean, and the proxy decides what to do.
//
// All its parsers share one field grammar (field.go), so that a head the
// fast path takes is one the guard lets through. Everything that parses
// input here is fuzzed against net/http (FuzzH1Head, FuzzH1Resp,
// FuzzH1Chunked, FuzzFraming).
package h1
