package httpapi

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
)

// gzipAbove is the size from which a list reply is compressed: the list of
// 10,000 certificates is about 6 MB of JSON, a tenth of that compressed.
const gzipAbove = 64 << 10

// replyList answers a GET of a list that a client polls (the console
// does, every two seconds): with an ETag, 304 Not Modified when the
// client's copy is current, so an unchanged list of thousands is neither
// sent nor parsed again, and gzip when the client accepts it.
func (o *Operator) replyList(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		o.reply(w, v, err)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeOperatorError(w, http.StatusInternalServerError, "encode reply")
		return
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept-Encoding")
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if len(b) < gzipAbove || !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		writeJSON(w, http.StatusOK, b)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Encoding", "gzip")
	w.WriteHeader(http.StatusOK)
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	_, _ = zw.Write(b)
	_ = zw.Close()
}

// etagMatches reports whether an If-None-Match header names etag (or *).
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0"
		}
	}
	return false
}
