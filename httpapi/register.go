package httpapi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/julienschmidt/httprouter"
)

type registerRequest struct {
	AllowFrom []string `json:"allowfrom"`
}

// Credentials is the /register reply. Its field order is the contract:
// acme.sh reads it with line-based sed, so it must stay one compact line in
// this order.
type Credentials struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

func (a *API) register(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if !a.admitRegistration(w, r) {
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeBodyError(w, err)
		return
	}
	var req registerRequest
	if err := decodeJSON(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json_payload")
		return
	}
	acct, creds, err := newAccount(a.opts.Zone, req.AllowFrom, func(key string) (string, error) {
		return a.auth.hash(r.Context(), key)
	})
	switch {
	case errors.Is(err, errInvalidAllowFrom):
		writeError(w, http.StatusBadRequest, "invalid_allowfrom_cidr")
		return
	case err != nil:
		a.serverError(w, r, "internal_error", "register: making the account failed", "err", err)
		return
	}
	if err := a.store.CreateAccount(r.Context(), acct); err != nil {
		a.serverError(w, r, "db_error", "register: storing account failed", "err", err)
		return
	}
	a.log.Info("account registered", "username", acct.Username, "subdomain", acct.Subdomain, "allowfrom", creds.AllowFrom)
	resp, err := json.Marshal(creds)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error")
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// parseAllowFrom validates CIDRs the way acme-dns accepts them: brackets
// around IPv6 are dropped and host bits are allowed (192.0.2.1/24 means the
// /24). shown is what the reply echoes (never null); any invalid entry
// rejects the whole list.
func parseAllowFrom(in []string) (shown []string, prefixes []netip.Prefix, ok bool) {
	shown = make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(strings.NewReplacer("[", "", "]", "").Replace(s))
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, false
		}
		shown = append(shown, s)
		prefixes = append(prefixes, p.Masked())
	}
	return shown, prefixes, true
}

// keyAlphabet has 64 symbols, so 6 random bits pick one without bias.
const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// newKey returns 40 characters of [A-Za-z0-9_-] from crypto/rand.
func newKey() (string, error) {
	var buf [40]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", errors.New("random source failed")
	}
	for i, b := range buf {
		buf[i] = keyAlphabet[b&63]
	}
	return string(buf[:]), nil
}
