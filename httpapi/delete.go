package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"
)

// These endpoints are what acme-dns users have asked for (removing values
// and accounts). They follow /update's style: X-Api-User and X-Api-Key, a
// JSON body naming the account's subdomain (so a client holding the wrong
// credentials file cannot act on another account by mistake), the same 401
// for every refusal.

type deleteRequest struct {
	Subdomain string `json:"subdomain"`
	TXT       string `json:"txt"`
}

type subdomainRequest struct {
	Subdomain string `json:"subdomain"`
}

// headerAuth reads X-Api-User/X-Api-Key, the body into v, and checks that
// the body's subdomain is the account's.
func (a *API) headerAuth(w http.ResponseWriter, r *http.Request, route string, v any, subdomain func() string, validate func() (string, bool), checkSource bool) (username, sub string, ok bool) {
	username, key, ok := credentialHeaders(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "forbidden")
		return "", "", false
	}
	if !readStrict(w, r, v) {
		return "", "", false
	}
	sub = strings.ToLower(strings.TrimSpace(subdomain()))
	if sub == "" {
		writeError(w, http.StatusBadRequest, "bad_subdomain")
		return "", "", false
	}
	if code, valid := validate(); !valid {
		writeError(w, http.StatusBadRequest, code)
		return "", "", false
	}
	acct, ok := a.authorize(w, r, route, username, key, checkSource)
	if !ok {
		return "", "", false
	}
	if sub != acct.Subdomain {
		a.log.Info(route+" refused: subdomain is not the account's", "username", username)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return "", "", false
	}
	return username, acct.Subdomain, true
}

func noValidation() (string, bool) { return "", true }

// deleteValue removes one value: DELETE /update or POST /delete.
func (a *API) deleteValue(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req deleteRequest
	_, sub, ok := a.headerAuth(w, r, "delete", &req, func() string { return req.Subdomain },
		func() (string, bool) { return "bad_txt", validTXT(req.TXT) }, true)
	if !ok {
		return
	}
	if err := a.store.RemoveValue(r.Context(), sub, req.TXT); err != nil {
		a.storeFailed(w, r, "delete", sub, err)
		return
	}
	a.log.Debug("value removed", "subdomain", sub)
	writeJSON(w, http.StatusOK, []byte(`{"txt": "`+req.TXT+`"}`))
}

// clearValues removes every value of the account: POST /clear.
func (a *API) clearValues(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req subdomainRequest
	_, sub, ok := a.headerAuth(w, r, "clear", &req, func() string { return req.Subdomain }, noValidation, true)
	if !ok {
		return
	}
	if err := a.store.ClearValues(r.Context(), sub); err != nil {
		a.storeFailed(w, r, "clear", sub, err)
		return
	}
	a.log.Info("values cleared", "subdomain", sub)
	writeJSON(w, http.StatusOK, []byte(`{"subdomain": `+strconv.Quote(sub)+`}`))
}

// deregister deletes the account and its values; its subdomain then
// answers NXDOMAIN. POST /deregister or DELETE /register.
func (a *API) deregister(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req subdomainRequest
	username, sub, ok := a.headerAuth(w, r, "deregister", &req, func() string { return req.Subdomain }, noValidation, true)
	if !ok {
		return
	}
	if err := a.store.DeleteAccount(r.Context(), username); err != nil {
		a.storeFailed(w, r, "deregister", sub, err)
		return
	}
	a.log.Info("account deregistered", "username", username, "subdomain", sub)
	writeJSON(w, http.StatusOK, []byte(`{"subdomain": `+strconv.Quote(sub)+`}`))
}

// sync makes this process re-publish the account's state from the store to
// its DNS view. It exists for `delegated account add`, which writes the
// account into the store from another process: the daemon's view follows
// only its own writes, so without this the new subdomain would answer
// NXDOMAIN until its first update. It changes no data, so it skips the
// allowfrom check (the operator's CLI runs on the server, which the
// customer's allowfrom rarely includes); the key is still required.
func (a *API) sync(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req subdomainRequest
	_, sub, ok := a.headerAuth(w, r, "sync", &req, func() string { return req.Subdomain }, noValidation, false)
	if !ok {
		return
	}
	if err := a.store.Republish(r.Context(), sub); err != nil {
		a.storeFailed(w, r, "sync", sub, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"subdomain": `+strconv.Quote(sub)+`}`))
}
