package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/delegated/delegated/store"
)

// decodeStrict decodes an extension endpoint's body. Unlike the compatible
// surface, which must tolerate whatever old clients add, our own endpoints
// refuse unknown keys so that a typo ("subdomian") is an error, not a no-op.
// Keys still match case-insensitively, and an empty body is an error: every
// extension needs its fields.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errEmptyBody
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			return errUnknownKey
		}
		return err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

var (
	errEmptyBody  = errors.New("empty body")
	errUnknownKey = errors.New("unknown key")
)

// readStrict reads and decodes an extension body, answering the request
// itself on failure.
func readStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := readBody(w, r)
	if err != nil {
		writeBodyError(w, err)
		return false
	}
	if err := decodeStrict(body, v); err != nil {
		if errors.Is(err, errUnknownKey) {
			writeError(w, http.StatusBadRequest, "unknown_key")
			return false
		}
		writeError(w, http.StatusBadRequest, "malformed_json_payload")
		return false
	}
	return true
}

// authorize checks a credential, for /update and every extension alike:
// the key against the stored hash (bcrypt bounded and cached), then, when
// checkSource is set, the client address against the account's allowfrom.
// A source with too many recent failures is refused before bcrypt (see
// failureLimit). It answers the request itself on failure; every refusal
// of a credential is the same 401.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, route, username, key string, checkSource bool) (store.Account, bool) {
	src, srcKnown := a.clientAddr(r)
	limited := a.authFailures != nil && a.authFailures.exhausted(a.limitKey(r, src, srcKnown))
	acct, err := a.auth.verify(r.Context(), username, key, !limited)
	switch {
	case errors.Is(err, errThrottled):
		a.log.Info(route+" refused: too many failed authentications from this source", "username", username, "peer", r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(int(a.opts.AuthFailurePer.Seconds())))
		writeError(w, http.StatusTooManyRequests, "too_many_failures")
		return store.Account{}, false
	case errors.Is(err, errForbidden):
		if a.authFailures != nil {
			a.authFailures.allow(a.limitKey(r, src, srcKnown))
		}
		a.log.Info(route+" refused: bad credentials", "username", username)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return store.Account{}, false
	case err != nil:
		a.serverError(w, r, "db_error", route+": reading account failed", "err", err)
		return store.Account{}, false
	}
	if checkSource && (!srcKnown || !allowed(acct.AllowFrom, src)) {
		a.log.Info(route+" refused: source address not allowed", "username", username, "peer", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return store.Account{}, false
	}
	return acct, true
}

// limitKey is the address failed authentications are counted against: the
// client's, or the TCP peer's when a trusted proxy sent an unreadable chain.
func (a *API) limitKey(r *http.Request, src netip.Addr, known bool) netip.Addr {
	if known {
		return src
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr()
	}
	return netip.Addr{}
}

// storeFailed answers a failed store write.
func (a *API) storeFailed(w http.ResponseWriter, r *http.Request, route, subdomain string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		// The account was deleted after it was authenticated.
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	a.serverError(w, r, "db_error", route+": store write failed", "subdomain", subdomain, "err", err)
}

// basicCredentials reads HTTP Basic credentials (what lego's httpreq
// provider sends), requiring exactly one Authorization header whose user is
// a UUID and whose password has the shape of an API key.
func basicCredentials(h http.Header) (username, key string, ok bool) {
	vals := h.Values("Authorization")
	if len(vals) != 1 {
		return "", "", false
	}
	scheme, payload, found := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return "", "", false
	}
	user, pass, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	username, ok = canonicalUUID(user)
	if !ok || !validKey(pass) {
		return "", "", false
	}
	return username, pass, true
}
