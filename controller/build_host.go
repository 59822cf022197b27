package controller

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"
)

// maxPathLength bounds a route path. The API server sets no limit, but
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

// normalizeHost returns the virtual host name for a host an object names
// (an Ingress rule's host, say): lower case, without a trailing dot, "" for
// a rule without a host. When the host cannot be served it returns a
// problem message instead, and the rule is skipped; the checks are the API
// server's.
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
