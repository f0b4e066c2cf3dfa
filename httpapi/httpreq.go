package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
	"github.com/miekg/dns"
)

// httpreqRequest is either of the bodies lego's httpreq provider posts:
// {"fqdn","value"} by default, {"domain","token","keyAuth"} in RAW mode.
type httpreqRequest struct {
	FQDN    string `json:"fqdn"`
	Value   string `json:"value"`
	Domain  string `json:"domain"`
	Token   string `json:"token"`
	KeyAuth string `json:"keyAuth"`
}

// maxKeyAuthLen bounds RAW mode's key authorization (token "." thumbprint,
// about 87 characters for real ones).
const maxKeyAuthLen = 512

// challenge works out which subdomain and value a request means. subdomain
// is "" when the fqdn names the customer's own _acme-challenge record
// (lego with CNAME following off, or RAW mode): the authenticated account's
// subdomain is meant. code is the error code when the body is unusable.
func (q httpreqRequest) challenge(zone string) (subdomain, value, code string) {
	plain := q.FQDN != "" || q.Value != ""
	raw := q.Domain != "" || q.Token != "" || q.KeyAuth != ""
	switch {
	case plain && raw, !plain && !raw:
		return "", "", "malformed_json_payload"
	case raw:
		domain := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(q.Domain)), "*.")
		if _, ok := dns.IsDomainName(domain); !ok || domain == "" || domain == "." {
			return "", "", "bad_domain"
		}
		if q.KeyAuth == "" || len(q.KeyAuth) > maxKeyAuthLen {
			return "", "", "bad_keyauth"
		}
		// The DNS-01 value (RFC 8555 §8.4).
		sum := sha256.Sum256([]byte(q.KeyAuth))
		return "", base64.RawURLEncoding.EncodeToString(sum[:]), ""
	}
	fqdn := dns.Fqdn(strings.ToLower(strings.TrimSpace(q.FQDN)))
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
		return "", "", "bad_fqdn"
	}
	if !validTXT(q.Value) {
		return "", "", "bad_txt"
	}
	if label, ok := strings.CutSuffix(fqdn, "."+zone+"."); ok {
		// A client that prefixes our name as if it were the customer's
		// means the same subdomain.
		label = strings.TrimPrefix(label, "_acme-challenge.")
		if label == "" || strings.Contains(label, ".") {
			return "", "", "bad_fqdn"
		}
		return label, q.Value, ""
	}
	if strings.HasPrefix(fqdn, "_acme-challenge.") {
		return "", q.Value, ""
	}
	return "", "", "bad_fqdn"
}

func (a *API) present(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	a.httpreq(w, r, "present")
}

func (a *API) cleanup(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	a.httpreq(w, r, "cleanup")
}

// httpreq serves lego's httpreq provider: HTTP Basic with the account's
// username and key, then the value added (present) or removed (cleanup).
func (a *API) httpreq(w http.ResponseWriter, r *http.Request, route string) {
	username, key, ok := basicCredentials(r.Header)
	if !ok {
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	var req httpreqRequest
	if !readStrict(w, r, &req) {
		return
	}
	sub, value, code := req.challenge(a.opts.Zone)
	if code != "" {
		writeError(w, http.StatusBadRequest, code)
		return
	}
	acct, ok := a.authorize(w, r, route, username, key, true)
	if !ok {
		return
	}
	if sub != "" && sub != acct.Subdomain {
		a.log.Info(route+" refused: fqdn is not the account's", "username", username)
		writeError(w, http.StatusUnauthorized, "forbidden")
		return
	}
	var err error
	if route == "present" {
		err = a.store.AddValue(r.Context(), acct.Subdomain, value)
	} else {
		err = a.store.RemoveValue(r.Context(), acct.Subdomain, value)
	}
	if err != nil {
		a.storeFailed(w, r, route, acct.Subdomain, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"txt": "`+value+`"}`))
}
