package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// writeError writes {"error": "<code>"} exactly as acme-dns does (with the
// space after the colon); codes are fixed identifiers, never raw errors.
func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, []byte(`{"error": `+strconv.Quote(code)+`}`))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errBodyTooLarge marks a body over maxBodyBytes.
var errBodyTooLarge = errors.New("request body too large")

// readBody reads the whole body, at most maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errBodyTooLarge
	}
	return body, err
}

// writeBodyError answers a body that could not be read or decoded.
func writeBodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, errBodyTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "payload_too_large")
		return
	}
	writeError(w, http.StatusBadRequest, "malformed_json_payload")
}

// decodeJSON decodes body into v. The Content-Type is ignored on purpose:
// acme.sh and Posh-ACME send JSON labelled as form data, the certbot hook
// sends no type at all. An empty body or null leaves v as it is. Keys match
// case-insensitively (encoding/json's rule), which old Go clients rely on
// ("AllowFrom"). Trailing data after the value is malformed.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
