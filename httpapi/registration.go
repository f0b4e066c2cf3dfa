package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// RegistrationMode says who may POST /register.
type RegistrationMode int

const (
	// RegistrationOpen lets anyone register, as acme-dns does.
	RegistrationOpen RegistrationMode = iota
	// RegistrationToken requires the pre-shared registration token.
	RegistrationToken
	// RegistrationClosed refuses every /register; operators create accounts
	// with `delegated account add`.
	RegistrationClosed
)

func (m RegistrationMode) String() string {
	switch m {
	case RegistrationOpen:
		return "open"
	case RegistrationToken:
		return "token"
	case RegistrationClosed:
		return "closed"
	}
	return fmt.Sprintf("RegistrationMode(%d)", int(m))
}

// admitRegistration applies the rate limit and the registration mode, and
// answers the request itself when it may not proceed. The rate limit comes
// first so that guessing the token is rate limited too.
func (a *API) admitRegistration(w http.ResponseWriter, r *http.Request) bool {
	if a.regLimit != nil {
		src, ok := a.clientAddr(r)
		if !ok {
			writeError(w, http.StatusBadRequest, "bad_forwarded_for")
			return false
		}
		if !a.regLimit.allow(src) {
			a.log.Info("register refused: rate limited", "source", src)
			w.Header().Set("Retry-After", fmt.Sprint(max(1, int(a.opts.RegisterPer.Seconds())/a.opts.RegisterRate)))
			writeError(w, http.StatusTooManyRequests, "rate_limited")
			return false
		}
	}
	switch a.opts.Registration {
	case RegistrationClosed:
		writeError(w, http.StatusForbidden, "registration_closed")
		return false
	case RegistrationToken:
		tok, ok := registrationToken(r.Header)
		digest := sha256.Sum256([]byte(tok))
		// Comparing fixed-size digests keeps the comparison's time
		// independent of the token's length and content.
		if !ok || subtle.ConstantTimeCompare(digest[:], a.regDigest[:]) != 1 {
			a.log.Info("register refused: bad registration token")
			writeError(w, http.StatusUnauthorized, "forbidden")
			return false
		}
	}
	return true
}

// registrationToken reads the token from exactly one of
// "Authorization: Bearer <token>" or "X-Registration-Token: <token>".
// Repeated or conflicting headers are refused rather than guessed at.
func registrationToken(h http.Header) (string, bool) {
	auth := h.Values("Authorization")
	custom := h.Values("X-Registration-Token")
	switch {
	case len(auth)+len(custom) != 1:
		return "", false
	case len(custom) == 1:
		tok := strings.TrimSpace(custom[0])
		return tok, tok != ""
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(auth[0]), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}
