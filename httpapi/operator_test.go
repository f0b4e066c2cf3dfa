package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOperatorSocket: the socket is created owner-only, a stale one is
// replaced, a live one or a regular file is never removed, and it is gone
// after Shutdown. (The routes are exercised end to end in e2e/issuer.)
func TestOperatorSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "delegated.sock")

	// A stale socket from a crashed run.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	op := NewOperator(OperatorOptions{Socket: sock}, nil)
	if err := op.Start(); err != nil {
		t.Fatalf("start over a stale socket: %v", err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the socket's folder, want only the socket", len(entries))
	}
	// The socket serves: an unknown endpoint gets the operator's JSON 404.
	cl := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := cl.Get("http://x/v1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}

	// A second daemon must not steal a live socket.
	other := NewOperator(OperatorOptions{Socket: sock}, nil)
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second start: %v, want in use", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := op.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after shutdown: %v", err)
	}

	// Never removes something that is not a socket.
	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewOperator(OperatorOptions{Socket: file}, nil).Start(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("start over a file: %v", err)
	}
}

// TestOperatorToken: the HTTP handler refuses anything but the exact token
// or, as its alternative, the console's session (never beside a wrong
// token), and refuses everything when no token is configured.
func TestOperatorToken(t *testing.T) {
	tests := []struct {
		name, token, auth string
		session           bool
		want              int
	}{
		{"no token configured", "", "Bearer ", false, http.StatusUnauthorized},
		{"no header", "s3cret", "", false, http.StatusUnauthorized},
		{"wrong token", "s3cret", "Bearer s3creT", false, http.StatusUnauthorized},
		{"prefix of the token", "s3cret", "Bearer s3cre", false, http.StatusUnauthorized},
		{"basic scheme", "s3cret", "Basic s3cret", false, http.StatusUnauthorized},
		{"right token", "s3cret", "Bearer s3cret", false, http.StatusNotFound}, // passes to the routes
		{"console session", "s3cret", "", true, http.StatusNotFound},
		{"session beside a wrong token", "s3cret", "Bearer nope", true, http.StatusUnauthorized},
		{"session without a token configured", "", "", true, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			session := func(*http.Request) bool { return tc.session }
			h := NewOperator(OperatorOptions{Token: tc.token, Session: session}, nil).TokenHandler()
			req := httptest.NewRequest(http.MethodGet, "/v1/nothing", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d (%s)", rec.Code, tc.want, rec.Body)
			}
		})
	}
}
