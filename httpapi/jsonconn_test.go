package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServerErrorsAreJSON: requests net/http refuses before any handler
// runs got text/plain bodies although the README promises JSON
// {"error": …} everywhere. On a plain-HTTP listener they are JSON now.
func TestServerErrorsAreJSON(t *testing.T) {
	e := newHardEnvOpts(t, Options{Listen: []string{"127.0.0.1:0"}})
	if err := e.api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.api.Shutdown(t.Context()) })
	addr := e.api.Addrs()[0]
	for _, tc := range []struct {
		name    string
		request string
		status  int
		code    string
	}{
		{"headers over MaxHeaderBytes", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431, "request_header_fields_too_large"},
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"bad header bytes", "GET /health HTTP/1.1\r\nHost: x\r\nBad\x01Name: y\r\n\r\n", 400, "bad_request"},
		{"missing Host", "GET /health HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"unknown transfer coding", "POST /update HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "unsupported_transfer_encoding"},
		{"unsupported version", "GET /health HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			var v map[string]string
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(body, &v) != nil || v["error"] != tc.code {
				t.Errorf("got %d %q %q, want %d application/json {\"error\": %q}", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code)
			}
		})
	}
}

// TestJSONServerErrorLeavesRepliesAlone: only net/http's own error replies
// are rewritten, never a handler's (which always carry a Date header).
func TestJSONServerErrorLeavesRepliesAlone(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 07 Dec 2026 08:00:00 GMT\r\n\r\n{}",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 07 Dec 2026 08:00:00 GMT\r\nConnection: close\r\n\r\nx",
		`{"txt": "HTTP/1.1 400"}`,
		"HTTP/1.1 200 OK" + serverErrorHeaders + "ok",
		"",
	} {
		if out, ok := jsonServerError([]byte(in)); ok {
			t.Errorf("%q rewritten as %q", in, out)
		}
	}
}
