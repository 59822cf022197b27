package route

// Rewrite is what ingress-nginx's rewrite-target does to the requests of
// a route: the whole request URI is replaced by Target (not only the part
// the path matched), with the capture groups ($1..$9) of the route's path
// expression and the request's variables; the query is kept. A Target
// that is an absolute URL ("https://...") answers 302 to it instead.
type Rewrite struct {
	// Target is the new URI; never nil in a table.
	Target *Template `json:"target"`
	// ForwardedPrefix, when not empty, is sent to the endpoint as
	// X-Forwarded-Prefix (x-forwarded-prefix, which ingress-nginx sends
	// only together with a rewrite).
	ForwardedPrefix string `json:"forwardedPrefix,omitempty"`
}

// CleanPath returns the request path as routing matches it: "." and ".."
// resolved, repeated slashes merged, as nginx normalises a URI; what a
// rewrite's expression is matched against too.
func CleanPath(p string) string { return cleanPath(p) }
