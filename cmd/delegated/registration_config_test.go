package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delegated/delegated/config"
)

// TestAPIExtensionKeysRefused: each bad [api] extension key is refused at
// load, naming the key and what it accepts.
func TestAPIExtensionKeysRefused(t *testing.T) {
	cases := []struct{ extra, key, says string }{
		{`registration = "maybe"`, "api.registration", `"open", "token", "closed"`},
		{`register_rate = "ten/h"`, "api.register_rate", `"10/h"`},
		{`register_rate = "10/fortnight"`, "api.register_rate", `"10/h"`},
		{`trusted_proxies = ["10.0.0.0/8", "proxy.example"]`, "api.trusted_proxies[1]", "CIDR"},
		{`tls = "auto"`, "api.tls", `"none", "files" or "acme"`},
		{`tls = "acme"`, "api.tls", "[issuer]"},
		{`tls = "files"`, "api.cert_file", "PEM"},
		{"tls = \"files\"\ncert_file = \"c.pem\"", "api.key_file", "PEM"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			_, err := loadConfig(writeExtConfig(t, t.TempDir(), c.extra))
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 {
				t.Fatalf("err %v, want exit status 2", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.key+":") || !strings.Contains(msg, c.says) {
				t.Fatalf("message %q does not name %s and %s", msg, c.key, c.says)
			}
		})
	}
}

func TestAPIExtensionKeysDefaults(t *testing.T) {
	if _, err := config.Load(writeExtConfig(t, t.TempDir(), `trusted_proxies = ["10.0.0.1", "[::1]/128"]`)); err == nil {
		t.Fatal("bracketed CIDR accepted")
	}
	cfg, err := config.Load(writeExtConfig(t, t.TempDir(), `trusted_proxies = ["10.0.0.1", "fd00::/8"]`))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.API
	if a.Registration != "open" || a.TLS != "none" || a.RegisterRate != "" || !*a.Metrics {
		t.Fatalf("defaults: %+v", a)
	}
	if got := []string{a.TrustedProxyPrefixes[0].String(), a.TrustedProxyPrefixes[1].String()}; got[0] != "10.0.0.1/32" || got[1] != "fd00::/8" {
		t.Fatalf("trusted proxies %v", got)
	}
}

// TestRegistrationTokenSources: token mode needs a token from the file or
// the environment; without one the daemon does not start (exit 2).
func TestRegistrationTokenSources(t *testing.T) {
	t.Setenv(registrationTokenEnv, "")
	dir := t.TempDir()
	cfg, err := config.Load(writeExtConfig(t, dir, `registration = "token"`))
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "api.registration_token_file") || !strings.Contains(err.Error(), registrationTokenEnv) {
		t.Fatalf("token mode without a token: %v", err)
	}

	for _, source := range []string{"file", "env"} {
		t.Run(source, func(t *testing.T) {
			dir := t.TempDir()
			extra := `registration = "token"`
			if source == "file" {
				if err := os.WriteFile(filepath.Join(dir, "reg.token"), []byte("file-token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				extra += "\nregistration_token_file = \"reg.token\""
			} else {
				t.Setenv(registrationTokenEnv, "env-token")
			}
			d := startExtDaemon(t, writeExtConfig(t, dir, extra))
			if code, body := extCall(t, "POST", "http://"+d.api+"/register", nil, ""); code != http.StatusUnauthorized || body != `{"error": "forbidden"}` {
				t.Fatalf("register without token: %d %s", code, body)
			}
			if code, body := extCall(t, "POST", "http://"+d.api+"/register", map[string]string{"Authorization": "Bearer " + source + "-token"}, ""); code != http.StatusCreated {
				t.Fatalf("register with token: %d %s", code, body)
			}
		})
	}
}
