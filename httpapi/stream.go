package httpapi

import (
	"net/http"
	"time"
)

// Default server timeouts of the HTTP listener (Options.ReadTimeout,
// Options.WriteTimeout).
const (
	defaultReadTimeout  = 30 * time.Second
	defaultWriteTimeout = 30 * time.Second
)

// beginStream lifts the server's read and write deadlines for a response
// that streams for as long as the work it reports takes (the operator API's
// NDJSON progress, `delegated issue --url …`). WriteTimeout cut such a
// stream after 30 s, and ReadTimeout too: the server's background read
// hits the read deadline and cancels the request's context. The stream
// ends when its work does or the client goes. Call it before the first
// byte; it reports whether the deadlines could be lifted (a
// ResponseWriter that supports neither, as in httptest recorders, has
// none to lift).
func beginStream(w http.ResponseWriter) bool {
	rc := http.NewResponseController(w)
	werr := rc.SetWriteDeadline(time.Time{})
	rerr := rc.SetReadDeadline(time.Time{})
	return werr == nil && rerr == nil
}
