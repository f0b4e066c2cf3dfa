package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
)

// TestAPIACMEWiring: tls = "acme" points the API at the deployed files of
// delegated-api with a placeholder for the configured names, and the CLI
// pins the same file; other modes leave the options alone.
func TestAPIACMEWiring(t *testing.T) {
	const issuerSection = "[issuer]\ndirectory = \"https://127.0.0.1:1/dir\"\nresolvers = [\"127.0.0.1:1\"]\n"
	cases := []struct {
		name, extra string
		wantNames   []string
	}{
		{"acme, default names", "tls = \"acme\"\n" + issuerSection, []string{"auth.example.test"}},
		{"acme, zone and wildcard", "tls = \"acme\"\nacme_domains = [\"auth.example.test\", \"*.auth.example.test\"]\n" + issuerSection,
			[]string{"auth.example.test", "*.auth.example.test"}},
		{"none, with an issuer", issuerSection, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, _, isvc := testIssuerService(t, dir, tc.extra)
			log := slog.New(slog.DiscardHandler)
			var opts httpapi.Options
			a, err := newAPIACME(cfg, isvc, log, &opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNames == nil {
				if a != nil || opts.TLSCertFile != "" || opts.TLSPlaceholder != nil {
					t.Fatalf("tls %q: options changed: %+v", cfg.API.TLS, opts)
				}
				return
			}
			live := filepath.Join(dir, "certs", "live", apiCertName)
			if opts.TLSCertFile != filepath.Join(live, "fullchain.pem") || opts.TLSKeyFile != filepath.Join(live, "privkey.pem") {
				t.Errorf("served files %s, %s; want those in %s", opts.TLSCertFile, opts.TLSKeyFile, live)
			}
			if !slices.Equal(opts.TLSPlaceholder, tc.wantNames) || opts.TLSReload == nil {
				t.Errorf("placeholder %q reload %v; want %q and a reload channel", opts.TLSPlaceholder, opts.TLSReload, tc.wantNames)
			}
			if got := servedCertFile(cfg); got != opts.TLSCertFile {
				t.Errorf("CLI pins %s, the API serves %s", got, opts.TLSCertFile)
			}
		})
	}
}

// testIssuerService loads a test config (writeExtConfig with extra) in
// dir, opens its store (closed at the end of the test) and builds the
// issuer service on it, as serve does.
func testIssuerService(t *testing.T, dir, extra string) (*config.Config, *store.Store, *issuerService) {
	t.Helper()
	cfg, err := loadConfig(writeExtConfig(t, dir, extra))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), "sqlite3", cfg.Store.DSN, store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := preflight(cfg)
	if err != nil {
		t.Fatal(err)
	}
	isvc, err := newIssuerService(cfg, in.issuer, st, log)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, isvc
}
