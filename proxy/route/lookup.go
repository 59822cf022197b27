package route

import (
	"path"
	"strings"
)

// Lookup returns the route serving a request for host and path, or nil when
// nothing matches and the table has no default route (the proxy answers
// 404). host is the request's Host: any port is ignored, case does not
// matter and a trailing dot is dropped. path is the request's decoded path.
// req gives the method, header fields and query that routes with
// conditions match (see VirtualHost.Match); nil matches only routes
// without.
//
// Virtual hosts are tried from the most to the least specific: the exact
// host, then the wildcard host one label up ("*.example.com" for
// "a.example.com", never for "b.a.example.com"), then the catch-all host
// that rules without a host form. The first of them with a matching path
// serves the request; the table's default route serves what none matches.
// A table with Sections looks in the section the host selects only.
// In the common case (a lower-case host, a clean path) Lookup does not
// allocate.
func (t *Table) Lookup(host, reqPath string, req Request) *Route {
	if len(t.Sections) > 0 {
		if s := t.Section(host); s != nil {
			return s.Table.Lookup(host, reqPath, req)
		}
		return t.Default
	}
	host = NormalizeHost(host)
	reqPath = cleanPath(reqPath)
	if vh := t.exact[host]; vh != nil {
		if r := vh.Match(reqPath, req); r != nil {
			return r
		}
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if vh := t.wildcard[host[i+1:]]; vh != nil {
			if r := vh.Match(reqPath, req); r != nil {
				return r
			}
		}
		if t.deep {
			if r := t.matchDeep(host[i+1:], reqPath, req); r != nil {
				return r
			}
		}
	}
	if t.any != nil {
		if r := t.any.Match(reqPath, req); r != nil {
			return r
		}
	}
	return t.Default
}

// Host returns the virtual host a request for host would be matched
// against first (exact, then wildcard, then catch-all), or nil.
func (t *Table) Host(host string) *VirtualHost {
	if len(t.Sections) > 0 {
		if s := t.Section(host); s != nil {
			return s.Table.Host(host)
		}
		return nil
	}
	host = NormalizeHost(host)
	if vh := t.exact[host]; vh != nil {
		return vh
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if vh := t.wildcard[host[i+1:]]; vh != nil {
			return vh
		}
		for rest := host[i+1:]; t.deep; {
			j := strings.IndexByte(rest, '.')
			if j < 0 {
				break
			}
			rest = rest[j+1:]
			if vh := t.wildcard[rest]; vh != nil && vh.AnyDepth {
				return vh
			}
		}
	}
	return t.any
}

// matchDeep tries the AnyDepth wildcard hosts above parent (the host
// without its first label), the longest suffix first.
func (t *Table) matchDeep(parent, reqPath string, req Request) *Route {
	for rest := parent; ; {
		j := strings.IndexByte(rest, '.')
		if j < 0 {
			return nil
		}
		rest = rest[j+1:]
		if vh := t.wildcard[rest]; vh != nil && vh.AnyDepth {
			if r := vh.Match(reqPath, req); r != nil {
				return r
			}
		}
	}
}

// NormalizeHost returns host without its port, lower-cased and without a
// trailing dot. It allocates only when host has upper-case letters.
func NormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		// An IPv6 literal never names a virtual host; keep it whole so it
		// can only match the catch-all.
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// cleanPath resolves "." and ".." elements and repeated slashes, the way
// nginx normalises a URI before matching locations, so that "/public/../admin"
// is matched as "/admin". A trailing slash is kept. Clean paths, the common
// case, are returned as they are without allocating.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		return p
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c
}
