package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CookieName is the session cookie; CSRFHeader the header every
// state-changing request of the page carries.
const (
	CookieName = "delegated_console"
	CSRFHeader = "X-CSRF-Token"
)

// A session cookie is "<payload>.<mac>", both unpadded base64url: the
// payload is a random 16-byte id and the expiry (Unix seconds, 8 bytes big
// endian); the mac is HMAC-SHA256 over the payload with a key derived from
// the operator token. Nothing is stored: a session survives a restart with
// the same token, and every session dies when the token changes.
const (
	idLen      = 16
	payloadLen = idLen + 8
	macLen     = sha256.Size
	// maxCookieLen bounds what verify decodes.
	maxCookieLen = 128
)

var errBadSession = errors.New("no valid console session")

// sessions signs and checks session cookies and CSRF tokens.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	// ended holds the ids of sessions logged out before their expiry,
	// until that expiry (in memory: a restart forgets logouts, which only
	// matters for a cookie stolen before its owner logged out).
	mu    sync.Mutex
	ended map[[idLen]byte]time.Time
}

func newSessions(token string, ttl time.Duration, now func() time.Time) *sessions {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("delegated console session key v1"))
	return &sessions{key: m.Sum(nil), ttl: ttl, now: now, ended: map[[idLen]byte]time.Time{}}
}

func (s *sessions) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// create returns a new session's cookie value and its expiry.
func (s *sessions) create() (string, time.Time, error) {
	var p [payloadLen]byte
	if _, err := rand.Read(p[:idLen]); err != nil {
		return "", time.Time{}, err
	}
	exp := s.now().Add(s.ttl).Truncate(time.Second)
	binary.BigEndian.PutUint64(p[idLen:], uint64(exp.Unix()))
	enc := base64.RawURLEncoding
	return enc.EncodeToString(p[:]) + "." + enc.EncodeToString(s.mac([]byte("session"), p[:])), exp, nil
}

// session is a verified session.
type session struct {
	id  [idLen]byte
	exp time.Time
}

// verify checks a cookie value: well formed, signed with this token's
// key, not expired, not logged out.
func (s *sessions) verify(value string) (session, error) {
	if len(value) > maxCookieLen {
		return session{}, errBadSession
	}
	payloadB64, macB64, ok := strings.Cut(value, ".")
	if !ok {
		return session{}, errBadSession
	}
	// Strict: one encoding per value, so no second spelling of a cookie.
	enc := base64.RawURLEncoding.Strict()
	p, err1 := enc.DecodeString(payloadB64)
	m, err2 := enc.DecodeString(macB64)
	if err1 != nil || err2 != nil || len(p) != payloadLen || len(m) != macLen {
		return session{}, errBadSession
	}
	if subtle.ConstantTimeCompare(m, s.mac([]byte("session"), p)) != 1 {
		return session{}, errBadSession
	}
	var ss session
	copy(ss.id[:], p[:idLen])
	ss.exp = time.Unix(int64(binary.BigEndian.Uint64(p[idLen:])), 0)
	now := s.now()
	if !now.Before(ss.exp) {
		return session{}, errBadSession
	}
	s.mu.Lock()
	_, gone := s.ended[ss.id]
	s.mu.Unlock()
	if gone {
		return session{}, errBadSession
	}
	return ss, nil
}

// csrf is the session's CSRF token: derived from its id, so the page can
// fetch it once and the server needs no store.
func (s *sessions) csrf(ss session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac([]byte("csrf"), ss.id[:]))
}

// end logs a session out until its expiry, dropping expired entries.
func (s *sessions) end(ss session) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, exp := range s.ended {
		if !now.Before(exp) {
			delete(s.ended, id)
		}
	}
	s.ended[ss.id] = ss.exp
}

// fromRequest verifies the request's session cookie.
func (s *sessions) fromRequest(r *http.Request) (session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, errBadSession
	}
	return s.verify(c.Value)
}

// authorized reports whether r carries a valid session and, unless its
// method is safe, the session's CSRF token in CSRFHeader. The cookie alone
// never changes anything: SameSite=Strict already keeps other sites'
// requests from carrying it, and the header is the second lock.
func (s *sessions) authorized(r *http.Request) bool {
	ss, err := s.fromRequest(r)
	if err != nil {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf(ss))) == 1
}
