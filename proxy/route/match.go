package route

import "strings"

// Match returns the route of vh that serves reqPath, or nil. An Exact route
// wins whenever it matches, since no matching Prefix route can be longer;
// otherwise the longest Prefix route whose path is reqPath or an
// '/'-separated leading part of it wins. reqPath must start with '/'.
// Match does not allocate.
func (vh *VirtualHost) Match(reqPath string) *Route {
	if reqPath == "" || reqPath[0] != '/' {
		return nil
	}
	if len(vh.exact) > 0 {
		if r := vh.exact[reqPath]; r != nil {
			return r
		}
	}
	if len(vh.prefix) == 0 {
		return nil
	}
	p := reqPath
	for {
		p = NormalizePrefix(p)
		if r := vh.prefix[p]; r != nil {
			return r
		}
		if p == "/" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i == 0 {
			p = "/"
			continue
		}
		p = p[:i]
	}
}
