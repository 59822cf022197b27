package pipeline

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/postern-dev/postern/proxy/route"
)

// Basic auth (route.BasicAuth), as nginx's auth_basic: the credentials of
// the Authorization field (RFC 7617) against the users' password hashes.
// A bcrypt check costs tens of milliseconds of CPU, so credentials that
// were verified are remembered, as a keyed hash (HMAC-SHA256 under a key
// of the process's own: never the password, nor a hash one could test
// passwords against without the key), for as long as the users are the
// same: a logged-in client costs a microsecond. At most hashSlots checks
// run at once; a flood of wrong passwords waits for them rather than
// taking every core.

// maxVerified bounds the credentials a user store remembers.
const maxVerified = 4096

// hashSlots bounds the password hash checks running at once.
var hashSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// basicAuth is the check of a route.BasicAuth.
type basicAuth struct {
	challenge string // the WWW-Authenticate field's value
	store     *userStore
}

func newBasicAuth(ba *route.BasicAuth, us *userStores) *basicAuth {
	return &basicAuth{challenge: "Basic realm=" + strconv.Quote(ba.Realm), store: us.get(ba.Users)}
}

func (b *basicAuth) check(x *Exchange) (verdict, Reply) {
	v, n := x.In.Header("Authorization")
	if n > 1 {
		// nginx refuses a request with two: it could not say which one
		// it checked.
		return failed, ErrorReply(http.StatusBadRequest, "basic auth: more than one Authorization field")
	}
	user, password, ok := basicCredentials(v)
	if ok && b.store.verify(user, password) {
		return allowed, Reply{}
	}
	r := ErrorReply(http.StatusUnauthorized, "basic auth: no valid credentials")
	r.Fields = append(r.Fields[:len(r.Fields):len(r.Fields)], Edit{Op: Add, Name: "Www-Authenticate", Value: b.challenge})
	return refused, r
}

// basicCredentials returns the user and password of an Authorization
// field of the Basic scheme: the scheme's name in any case, spaces, and
// base64 of "user:password" (the user is up to the first colon).
func basicCredentials(v string) (user, password string, ok bool) {
	const scheme = "basic "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", "", false
	}
	enc := strings.TrimLeft(v[len(scheme):], " ")
	dec, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		if dec, err = base64.RawStdEncoding.DecodeString(enc); err != nil {
			return "", "", false
		}
	}
	user, password, ok = strings.Cut(string(dec), ":")
	return user, password, ok
}

// userStore is the users of one route.BasicAuth content, shared by the
// routes that have it, with the credentials verified against them.
type userStore struct {
	users map[string]route.PasswordMatcher // nil: the hash is unknown
	key   [32]byte

	macs sync.Pool // of *credMAC under key
	// checks counts the hash checks made (the costly part, for tests).
	checks atomic.Int64

	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{}
}

// credMAC is an HMAC of the store's key and a buffer for the credentials.
type credMAC struct {
	h   hash.Hash
	buf []byte
}

// newUserStore compiles users, the first of each name counting.
func newUserStore(users []route.User) *userStore {
	s := &userStore{users: make(map[string]route.PasswordMatcher, len(users)), verified: make(map[[sha256.Size]byte]struct{})}
	if _, err := rand.Read(s.key[:]); err != nil {
		panic("basic auth: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	s.macs.New = func() any { return &credMAC{h: hmac.New(sha256.New, s.key[:])} }
	for _, u := range users {
		if _, dup := s.users[u.Name]; dup {
			continue
		}
		_, s.users[u.Name] = route.ParseHash(u.Hash)
	}
	return s
}

// verify reports whether password is user's.
func (s *userStore) verify(user, password string) bool {
	enc, ok := s.users[user]
	if !ok || enc == nil {
		return false
	}
	m := s.macs.Get().(*credMAC)
	m.buf = append(append(append(m.buf[:0], user...), 0), password...)
	m.h.Reset()
	m.h.Write(m.buf)
	var k [sha256.Size]byte
	m.h.Sum(k[:0])
	clear(m.buf)
	s.macs.Put(m)
	s.mu.Lock()
	_, hit := s.verified[k]
	s.mu.Unlock()
	if hit {
		return true
	}
	hashSlots <- struct{}{}
	s.checks.Add(1)
	ok = enc.MatchesPassword(password)
	<-hashSlots
	if !ok {
		return false
	}
	s.mu.Lock()
	if len(s.verified) >= maxVerified {
		for old := range s.verified {
			delete(s.verified, old) // one at random: map order
			break
		}
	}
	s.verified[k] = struct{}{}
	s.mu.Unlock()
	return true
}

// userStores are the pipeline's user stores by the users' content
// (userKey): a Secret that changed gets a new store, and the credentials
// verified against the old one are forgotten with it.
type userStores struct {
	keptMap[[sha256.Size]byte, *userStore]
}

func (us *userStores) get(users []route.User) *userStore {
	return us.keep(userKey(users), func() *userStore { return newUserStore(users) })
}

// userKey is the key of users' store: a digest of their names and hashes.
func userKey(users []route.User) [sha256.Size]byte {
	h := sha256.New()
	for _, u := range users {
		h.Write([]byte(u.Name))
		h.Write([]byte{0})
		h.Write([]byte(u.Hash))
		h.Write([]byte{0})
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
