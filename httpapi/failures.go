package httpapi

import (
	"net/http"
)

// statusClientClosedRequest is nginx's 499: the client went away before the
// reply. Nothing reaches the client; it keeps such requests apart from
// server errors in delegated_api_requests_total and in the log.
const statusClientClosedRequest = 499

// serverError answers a request the server failed: 500 {"error": code},
// logged as an error. When the client has already gone (its connection
// closed, so the request's context ended and the store or bcrypt call
// failed because of it) it is no server fault: 499, logged at debug.
func (a *API) serverError(w http.ResponseWriter, r *http.Request, code, msg string, args ...any) {
	if r.Context().Err() != nil {
		a.log.Debug(msg+" (client went away)", args...)
		w.WriteHeader(statusClientClosedRequest)
		return
	}
	a.log.Error(msg, args...)
	writeError(w, http.StatusInternalServerError, code)
}

// Defaults of the per-source limit on failed authentications.
const (
	defaultAuthFailureRate = 20
	defaultAuthFailurePer  = 60 // seconds
)
