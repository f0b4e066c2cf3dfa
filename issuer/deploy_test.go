package issuer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeployFiles(t *testing.T) {
	dir := t.TempDir()
	p := pathsFor(dir, "example.com")
	// A second deploy replaces the first (renewal).
	for _, serial := range []string{"ONE", "TWO"} {
		if err := deploy(p, "CERT-"+serial+"\n", "CHAIN\n", "KEY-"+serial+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path, content string
		mode          os.FileMode
	}{
		{p.Cert, "CERT-TWO\n", 0o644},
		{p.Chain, "CHAIN\n", 0o644},
		{p.FullChain, "CERT-TWO\nCHAIN\n", 0o644},
		{p.PrivKey, "KEY-TWO\n", 0o600},
	} {
		b, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(tc.path)
		if string(b) != tc.content || fi.Mode().Perm() != tc.mode {
			t.Errorf("%s: %q mode %v, want %q mode %v", tc.path, b, fi.Mode().Perm(), tc.content, tc.mode)
		}
	}
	if p.Dir != filepath.Join(dir, "live", "example.com") {
		t.Errorf("dir %s", p.Dir)
	}
	// No temp files are left behind.
	entries, _ := os.ReadDir(p.Dir)
	if len(entries) != 4 {
		t.Errorf("%d entries in %s, want the 4 files", len(entries), p.Dir)
	}
}

func TestHook(t *testing.T) {
	dir := t.TempDir()
	p := pathsFor(dir, "ex")
	out := filepath.Join(dir, "env")
	tests := []struct {
		name, hook string
		renewed    bool
		wantErr    string
		wantEnv    []string
	}{
		{"environment", "env > " + out, true, "", []string{"DELEGATED_CERT_NAME=ex", "DELEGATED_DOMAINS=ex.com *.ex.com", "DELEGATED_RENEWED=1", "DELEGATED_KEY_PATH=" + p.PrivKey, "RENEWED_LINEAGE=" + p.Dir}},
		{"failure is reported with output", "echo reload failed >&2; exit 3", false, "exit status 3: reload failed", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := runHook(context.Background(), tc.hook, hookRun{Name: "ex", Domains: []string{"ex.com", "*.ex.com"}, Paths: p, Renewed: tc.renewed})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantEnv {
				if !strings.Contains(string(b), want+"\n") {
					t.Errorf("environment lacks %q", want)
				}
			}
		})
	}
}
