package route

import (
	"crypto/subtle"
	"strings"

	htpasswd "github.com/tg123/go-htpasswd"
)

// BasicAuth asks the clients of a route for a user name and password
// (RFC 7617), as ingress-nginx's auth-type: basic: a request without
// credentials a user of Users has is answered 401 with
// WWW-Authenticate: Basic realm="Realm"; one with them is forwarded
// without its Authorization field.
type BasicAuth struct {
	// Realm is the realm the 401 names.
	Realm string `json:"realm"`
	// Source names where the users come from ("Secret ns/name"), for
	// logs and the table.
	Source string `json:"source"`
	// Users are the users, in the order of their source; the first of a
	// name counts, as nginx reads an htpasswd file.
	Users []User `json:"users"`
}

// User is one user of a BasicAuth and the hash of their password.
type User struct {
	Name string `json:"name"`
	// Scheme names the hash's format (bcrypt, apr1, sha, ssha, md5-crypt,
	// sha256-crypt, sha512-crypt, plain); empty when Postern does not
	// know it: the user can never log in.
	Scheme string `json:"scheme,omitempty"`
	// Hash is the password's hash, as the htpasswd line has it. It is
	// never shown (/debug/routes prints the table).
	Hash string `json:"-"`
}

// ExternalAuth asks another service whether a request may go on, before
// it is forwarded, as ingress-nginx's auth-url (nginx's auth_request): a
// request without a body to URL with the client's header fields; a 2xx
// answer lets the request through, 401 and 403 go to the client (401 as
// a redirect to Signin when set), anything else, or no answer, is 500.
type ExternalAuth struct {
	// URL is the auth service's URL; it may use variables.
	URL *Template `json:"url"`
	// Method is the auth request's method; empty means GET.
	Method string `json:"method,omitempty"`
	// Signin, when set, is where a 401 of the auth service sends the
	// client instead (302), with the original URL in the query parameter
	// SigninParam (empty: "rd") unless Signin's query has that parameter.
	Signin      *Template `json:"signin,omitempty"`
	SigninParam string    `json:"signinParam,omitempty"`
	// ResponseHeaders are the header fields copied from the auth
	// service's answer into the request forwarded, replacing what the
	// client sent under those names (removed when the answer has none).
	ResponseHeaders []string `json:"responseHeaders,omitempty"`
	// RequestRedirect, when set, is the X-Auth-Request-Redirect sent to
	// the auth service instead of the request URI.
	RequestRedirect *Template `json:"requestRedirect,omitempty"`
	// Headers are more header fields set on the auth request
	// (auth-proxy-set-headers), in name order; values may use variables.
	Headers HeaderEdits `json:"headers,omitempty"`
	// AlwaysSetCookie sends the auth service's Set-Cookie fields to the
	// client on every answer, not only on 2xx and 3xx ones (nginx's
	// add_header without "always").
	AlwaysSetCookie bool `json:"alwaysSetCookie,omitempty"`
	// CacheKey, when set, caches the auth service's answers per route and
	// value of the key, for the durations of Cache.
	CacheKey *Template      `json:"cacheKey,omitempty"`
	Cache    []CacheForCode `json:"cache,omitempty"`
	// Global is set for the controller-wide auth (--global-auth-url).
	Global bool `json:"global,omitempty"`
}

// CacheForCode is how long answers of the statuses Codes are cached
// (nginx's proxy_cache_valid); a Codes of nil means every status.
type CacheForCode struct {
	Codes []int    `json:"codes,omitempty"`
	TTL   Duration `json:"ttl"`
}

// PasswordMatcher checks passwords against one hash.
type PasswordMatcher interface {
	MatchesPassword(password string) bool
}

// hashFormats are the password hash formats of nginx's
// auth_basic_user_file as the ingress-nginx image runs it, by prefix,
// with their parsers (github.com/tg123/go-htpasswd); {PLAIN} is handled
// apart.
var hashFormats = []struct {
	prefix, scheme string
	parse          htpasswd.PasswdParser
}{
	{"$2a$", "bcrypt", htpasswd.AcceptBcrypt},
	{"$2b$", "bcrypt", htpasswd.AcceptBcrypt},
	{"$2y$", "bcrypt", htpasswd.AcceptBcrypt},
	{"$apr1$", "apr1", htpasswd.AcceptMd5},
	{"$1$", "md5-crypt", htpasswd.AcceptMd5},
	{"$5$", "sha256-crypt", htpasswd.AcceptCryptSha},
	{"$6$", "sha512-crypt", htpasswd.AcceptCryptSha},
	{"{SHA}", "sha", htpasswd.AcceptSha},
	{"{SSHA}", "ssha", htpasswd.AcceptSsha},
}

// ParseHash returns the scheme (User.Scheme) and matcher of an htpasswd
// password hash; "" and nil for a format Postern does not know or a
// malformed hash, which no password matches.
func ParseHash(h string) (string, PasswordMatcher) {
	if p, ok := strings.CutPrefix(h, "{PLAIN}"); ok {
		return "plain", plainPassword(p)
	}
	for _, f := range hashFormats {
		if !strings.HasPrefix(h, f.prefix) {
			continue
		}
		m, err := f.parse(h)
		if err != nil || m == nil || !wellFormed(f.scheme, h) {
			return "", nil
		}
		return f.scheme, m
	}
	return "", nil
}

// wellFormed checks what the parsers leave to the check: a bcrypt hash
// is 60 characters, a crypt hash has its salt and digest.
func wellFormed(scheme, h string) bool {
	switch scheme {
	case "bcrypt":
		return len(h) == 60
	case "apr1", "md5-crypt", "sha256-crypt", "sha512-crypt":
		return strings.Count(h, "$") >= 3 && !strings.HasSuffix(h, "$")
	}
	return true
}

// plainPassword is a {PLAIN} "hash": the password itself.
type plainPassword string

func (p plainPassword) MatchesPassword(pw string) bool {
	return subtle.ConstantTimeCompare([]byte(p), []byte(pw)) == 1
}
