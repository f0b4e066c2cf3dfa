package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

// authorize checks a credential the way /update does: the key against the
// stored hash (bcrypt bounded and cached), then, when checkSource is set,
// the client address against the account's allowfrom. It answers the
// request itself on failure; every refusal is the same 401.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, route, username, key string, checkSource bool) (store.Account, bool) {
	acct, err := a.auth.verify(r.Context(), username, key)
	switch {
	case errors.Is(err, errForbidden):
		a.log.Info(route+" refused: bad credentials", "username", username)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return store.Account{}, false
	case err != nil:
		if r.Context().Err() == nil {
			a.log.Error(route+": reading account failed", "err", err)
		}
		writeError(w, http.StatusInternalServerError, "db_error")
		return store.Account{}, false
	}
	if checkSource {
		src, ok := a.clientAddr(r)
		if !ok || !allowed(acct.AllowFrom, src) {
			a.log.Info(route+" refused: source address not allowed", "username", username, "peer", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "forbidden")
			return store.Account{}, false
		}
	}
	return acct, true
}

// storeFailed answers a failed store write.
func (a *API) storeFailed(w http.ResponseWriter, route, subdomain string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		// The account was deleted after it was authenticated.
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	a.log.Error(route+": store write failed", "subdomain", subdomain, "err", err)
	writeError(w, http.StatusInternalServerError, "db_error")
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
