package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Versions the harness and .ci/run are written against. Newer releases may
// change flags or config keys, so CI installs exactly these.
const (
	PebbleVersion = "v2.10.3"
	LegoVersion   = "v4.35.2"
)

// Install commands shown when a tool is missing. Debian package names are
// those .ci/run installs.
const (
	HintUnbound      = "apt-get install -y --no-install-recommends unbound"
	HintNSD          = "apt-get install -y --no-install-recommends nsd"
	HintKnot         = "apt-get install -y --no-install-recommends knot knot-dnsutils"
	HintCertbot      = "apt-get install -y --no-install-recommends certbot"
	HintDig          = "apt-get install -y --no-install-recommends dnsutils"
	HintDelv         = "apt-get install -y --no-install-recommends bind9-dnsutils"
	HintDnsperf      = "apt-get install -y --no-install-recommends dnsperf"
	HintCurl         = "apt-get install -y --no-install-recommends curl"
	HintChromium     = "apt-get install -y chromium"
	HintPebble       = "go install github.com/letsencrypt/pebble/v2/cmd/pebble@" + PebbleVersion
	HintChallTestSrv = "go install github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@" + PebbleVersion
	// lego cannot be go-installed through the module proxy (the deprecation
	// lookup fails), so .ci/run builds it in a throwaway tools module.
	HintLego = "bash .ci/run (builds lego " + LegoVersion + " into $HOME/.cache/delegated-e2e/bin), or: " +
		"cd $(mktemp -d) && go mod init e2etools && go get -tool github.com/go-acme/lego/v4/cmd/lego@" + LegoVersion +
		" && go build -o $DELEGATED_E2E_BIN/lego github.com/go-acme/lego/v4/cmd/lego"
	HintPebbleModule = "go mod download github.com/letsencrypt/pebble/v2@" + PebbleVersion +
		" (or set PEBBLE_DIR to its source directory)"
)

// Environment variables the harness reads (see the package documentation).
const (
	EnvCI        = "CI"
	EnvE2EBin    = "DELEGATED_E2E_BIN"
	EnvPebbleDir = "PEBBLE_DIR"
)

// RequireTool returns the absolute path of the executable name. It looks in
// PATH, then $DELEGATED_E2E_BIN, then $(go env GOPATH)/bin, then
// $HOME/.cache/delegated-e2e/bin (where .ci/run caches lego, so a local
// `go test` after one CI run finds it), then /usr/sbin and /usr/local/sbin
// (daemons live there and a non-root PATH often lacks them).
//
// A missing tool skips the test with installHint, or fails it when $CI is
// set: CI installs every tool, so absence there is a broken setup, not an
// optional dependency.
func RequireTool(t testing.TB, name, installHint string) string {
	t.Helper()
	path, err := LookTool(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found (%v); install with: %s", name, err, installHint))
	}
	return path
}

// LookTool is RequireTool without the testing.TB: it returns the path of name
// or an error listing the directories searched.
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	var dirs []string
	if d := os.Getenv(EnvE2EBin); d != "" {
		dirs = append(dirs, d)
	}
	if gp := goEnv("GOPATH"); gp != "" {
		// GOPATH may be a list; go install writes to the first entry.
		dirs = append(dirs, filepath.Join(filepath.SplitList(gp)[0], "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "delegated-e2e", "bin"))
	}
	dirs = append(dirs, "/usr/sbin", "/usr/local/sbin")
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("not in PATH nor in %s", strings.Join(dirs, ", "))
}

// missing skips or, under CI, fails the test with msg.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvCI) != "" {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
	} else {
		t.Skip(msg)
	}
}

// goEnv returns `go env key`, preferring the environment variable so the
// common case costs no process start. It returns "" when go is unavailable.
func goEnv(key string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// PebbleSourceDir returns the directory of the Pebble module source at
// PebbleVersion, which ships the TLS certificate Pebble serves and the
// minica that signed it. It uses $PEBBLE_DIR, else the module cache.
func PebbleSourceDir() (string, error) {
	var candidates []string
	if d := os.Getenv(EnvPebbleDir); d != "" {
		candidates = append(candidates, d)
	}
	if mc := goEnv("GOMODCACHE"); mc != "" {
		candidates = append(candidates, filepath.Join(mc, "github.com", "letsencrypt", "pebble", "v2@"+PebbleVersion))
	}
	for _, d := range candidates {
		if _, err := os.Stat(filepath.Join(d, pebbleMiniCA)); err == nil {
			return d, nil
		}
	}
	if len(candidates) == 0 {
		return "", errors.New("pebble source: PEBBLE_DIR unset and go env GOMODCACHE unavailable")
	}
	return "", fmt.Errorf("pebble source: %s missing in %s", pebbleMiniCA, strings.Join(candidates, ", "))
}

// requirePebbleSource is PebbleSourceDir with skip-or-fail semantics.
func requirePebbleSource(t testing.TB) string {
	t.Helper()
	d, err := PebbleSourceDir()
	if err != nil {
		missing(t, fmt.Sprintf("%v; install with: %s", err, HintPebbleModule))
	}
	return d
}
