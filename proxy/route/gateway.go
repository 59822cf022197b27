package route

import "strings"

// PathModifierType says how a PathModifier changes a request path.
type PathModifierType string

// The path modifiers of the Gateway API's HTTPPathModifier.
const (
	// ReplaceFullPath replaces the whole path with the modifier's Value.
	ReplaceFullPath PathModifierType = "ReplaceFullPath"
	// ReplacePrefixMatch replaces the part of the path the route's
	// Prefix match matched with the modifier's Value.
	ReplacePrefixMatch PathModifierType = "ReplacePrefixMatch"
)

// PathModifier is how a Gateway API RequestRedirect or URLRewrite filter
// changes the request path (HTTPPathModifier).
type PathModifier struct {
	Type PathModifierType `json:"type"`
	// Value is the new path (ReplaceFullPath) or what replaces the
	// matched prefix (ReplacePrefixMatch).
	Value string `json:"value"`
	// Prefix is the normalised path of the route's Prefix match, which
	// ReplacePrefixMatch replaces; set by the controller.
	Prefix string `json:"prefix,omitempty"`
}

// Apply returns p applied to the request path reqPath (decoded, as
// matched). ReplacePrefixMatch replaces the matched '/'-separated
// elements and keeps the rest: with Prefix "/foo" and Value "/bar",
// "/foo/x" becomes "/bar/x", "/foo" becomes "/bar"; a Value of "/"
// turns "/foo/x" into "/x" (never "//x") and "/foo" into "/".
func (p *PathModifier) Apply(reqPath string) string {
	if p.Type == ReplaceFullPath {
		return p.Value
	}
	rest := reqPath
	if p.Prefix != "/" {
		rest = strings.TrimPrefix(reqPath, p.Prefix)
	}
	if rest == "" {
		if p.Value == "" {
			return "/"
		}
		return p.Value
	}
	if rest[0] != '/' {
		rest = "/" + rest
	}
	return strings.TrimSuffix(p.Value, "/") + rest
}

// URLRedirect is the Gateway API's RequestRedirect filter: every request
// of the route is answered Code with a Location made from the request's
// URL with the given parts replaced; nothing is forwarded.
type URLRedirect struct {
	// Scheme replaces the request's ("http" or "https"); empty keeps it.
	Scheme string `json:"scheme,omitempty"`
	// Host replaces the request's host (its port is never kept); empty
	// keeps the host.
	Host string `json:"host,omitempty"`
	// Port, when not zero, is the Location's port. Zero means the
	// scheme's well-known port when Scheme is set, else the port of the
	// listener the request came in on. Port 80 with http and 443 with
	// https are left out of the Location.
	Port int `json:"port,omitempty"`
	// Path, when set, changes the path; nil keeps it. The query is kept.
	Path *PathModifier `json:"path,omitempty"`
	// Code is the status sent; zero means 302.
	Code int `json:"code,omitempty"`
}

// URLRewrite is the Gateway API's URLRewrite filter: the Host and path
// sent to the endpoints, changed; the client sees nothing of it.
type URLRewrite struct {
	// Host, when not empty, is the Host sent to the endpoints.
	Host string `json:"host,omitempty"`
	// Path, when set, changes the path sent; the query is kept.
	Path *PathModifier `json:"path,omitempty"`
}
