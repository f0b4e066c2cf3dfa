package httpapi

import (
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
)

type updateRequest struct {
	Subdomain string `json:"subdomain"`
	TXT       string `json:"txt"`
}

func (a *API) update(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	username, key, ok := credentialHeaders(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeBodyError(w, err)
		return
	}
	var req updateRequest
	if err := decodeJSON(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json_payload")
		return
	}
	acct, ok := a.authorize(w, r, "update", username, key, true)
	if !ok {
		return
	}
	if !strings.EqualFold(strings.TrimSpace(req.Subdomain), acct.Subdomain) {
		a.log.Info("update refused: subdomain is not the account's", "username", username)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	if !validTXT(req.TXT) {
		writeError(w, http.StatusBadRequest, "bad_txt")
		return
	}
	if err := a.store.AddValue(r.Context(), acct.Subdomain, req.TXT); err != nil {
		a.storeFailed(w, r, "update", acct.Subdomain, err)
		return
	}
	a.log.Debug("value updated", "subdomain", acct.Subdomain)
	// acme.sh counts the update as done only if "<txt>" appears in the reply;
	// this is acme-dns's exact body.
	writeJSON(w, http.StatusOK, []byte(`{"txt": "`+req.TXT+`"}`))
}

// credentialHeaders returns the canonical username and the key, requiring
// exactly one well-formed value of each header.
func credentialHeaders(r *http.Request) (username, key string, ok bool) {
	users := r.Header.Values("X-Api-User")
	keys := r.Header.Values("X-Api-Key")
	if len(users) != 1 || len(keys) != 1 {
		return "", "", false
	}
	username, ok = canonicalUUID(users[0])
	if !ok || !validKey(keys[0]) {
		return "", "", false
	}
	return username, keys[0], true
}
