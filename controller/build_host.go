package controller

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"

	"github.com/postern-dev/postern/proxy/route"
)

// maxPathLength bounds an Ingress path. The API server sets no limit, but
// no sane route is longer, and the proxy's request line limits are far
// below it.
const maxPathLength = 4096

// Path sequences the API server refuses in Exact and Prefix paths
// (k8s.io/kubernetes pkg/apis/networking/validation): a request path is
// cleaned before it is matched, so a rule containing them could never match,
// or would match something other than what it says.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

// normalizeHost returns the virtual host name for an Ingress rule's host:
// lower case, without a trailing dot, "" for a rule without a host. When the
// host cannot be served it returns a problem message instead, and the rule
// is skipped; the checks are the API server's.
func normalizeHost(raw string) (host, problem string) {
	if raw == "" {
		return "", ""
	}
	// Lower-case ASCII only: Unicode case mapping turns some non-ASCII
	// letters into ASCII ones (the Kelvin sign into "k"), which would let
	// an invalid host pass for a valid one.
	host = strings.TrimSuffix(asciiLower(raw), ".")
	shown := quoteShort(raw)
	switch {
	case len(host) > validation.DNS1123SubdomainMaxLength:
		return "", fmt.Sprintf("host %s is longer than %d characters; its rule is skipped", shown, validation.DNS1123SubdomainMaxLength)
	case host == "":
		return "", fmt.Sprintf("host %s is not a valid DNS name; its rule is skipped", shown)
	case netutils.ParseIPSloppy(host) != nil:
		return "", fmt.Sprintf("host %s is an IP address, not a DNS name; its rule is skipped", shown)
	case strings.Contains(host, "*"):
		if len(validation.IsWildcardDNS1123Subdomain(host)) > 0 {
			return "", fmt.Sprintf("host %s is not a valid wildcard host (\"*.\" then a DNS name, like *.example.com); its rule is skipped", shown)
		}
	default:
		if len(validation.IsDNS1123Subdomain(host)) > 0 {
			return "", fmt.Sprintf("host %s is not a valid DNS name (letters, digits, '-' and '.', each label starting and ending with a letter or digit); its rule is skipped", shown)
		}
	}
	return host, ""
}

// asciiLower lower-cases the ASCII letters of s and leaves every other byte.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// routePath is an Ingress path translated to a route, or why it cannot be.
type routePath struct {
	pathType route.PathType // the route's type
	path     string         // the route's path, Prefix paths normalised
	declared string         // the Ingress's pathType, for messages
	shown    string         // the path as messages show it
	reason   string         // non-empty when the path is skipped
	msg      string         // what is wrong, following the path's description
}

// normalizePath translates an Ingress path. A nil pathType is
// ImplementationSpecific, which Postern serves as Prefix; an empty Prefix
// path is "/". A path that is not absolute, or that an Exact or Prefix path
// may not be on the API server, is refused; so is an ImplementationSpecific
// one, since it is served as a Prefix path and could not match either.
func normalizePath(pt *networkingv1.PathType, p string) routePath {
	declared := networkingv1.PathTypeImplementationSpecific
	if pt != nil {
		declared = *pt
	}
	rp := routePath{declared: string(declared)}
	switch declared {
	case networkingv1.PathTypeExact:
		rp.pathType = route.PathExact
	case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
		rp.pathType = route.PathPrefix
		if p == "" {
			p = "/"
		}
	default:
		rp.declared = "pathType " + quoteShort(string(declared))
		rp.shown = shortPath(p)
		rp.reason = ReasonUnsupportedPathType
		rp.msg = "is not supported (want Exact, Prefix or ImplementationSpecific); the path is skipped"
		return rp
	}
	rp.shown = shortPath(p)
	if msg := pathProblem(p); msg != "" {
		rp.reason = ReasonInvalidPath
		rp.msg = msg + "; the path is skipped"
		return rp
	}
	rp.path = p
	if rp.pathType == route.PathPrefix {
		rp.path = route.NormalizePrefix(p)
	}
	return rp
}

// pathProblem says what is wrong with a route path, or returns "".
func pathProblem(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "is not an absolute path (it must start with \"/\")"
	}
	if len(p) > maxPathLength {
		return fmt.Sprintf("is longer than %d bytes", maxPathLength)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return "contains a control character"
		}
	}
	for _, s := range invalidPathSequences {
		if strings.Contains(p, s) {
			return fmt.Sprintf("must not contain %q", s)
		}
	}
	for _, s := range invalidPathSuffixes {
		if strings.HasSuffix(p, s) {
			return fmt.Sprintf("must not end with %q", s)
		}
	}
	return ""
}

// describeRoute names a route in messages: "host a.example.com path /x
// (Prefix)", or "path /x (Prefix) on any host" for rules without a host.
func describeRoute(host, shownPath, pathType string) string {
	if host == "" {
		return fmt.Sprintf("path %s (%s) on any host", shownPath, pathType)
	}
	return fmt.Sprintf("host %s path %s (%s)", host, shownPath, pathType)
}

// shortPath shows a path in a message: as it is when it is short and plain,
// quoted and cut short otherwise, so that no user string makes a message
// long, multi-line or ambiguous.
func shortPath(p string) string {
	if p == "" || len(p) > maxQuoted {
		return quoteShort(p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return quoteShort(p)
		}
	}
	return p
}
