package clients

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientTimeout bounds one client run. A lego order takes ~15 s; anything
// near this is a hang.
const clientTimeout = 2 * time.Minute

// TestRealClients runs every client against one stack, one after another:
// they all use the same customer name, whose _acme-challenge CNAME each
// subtest re-points at its own fresh delegated account. Each client also
// uses a fresh ACME account, and Pebble runs with PEBBLE_AUTHZREUSE=0, so
// every order is validated through DNS again.
func TestRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: starts delegated, Pebble, unbound and the real clients")
	}
	s := startStack(t)
	for _, c := range []struct {
		name string
		run  func(*testing.T, *stack)
	}{
		{"lego-acme-dns-preseeded", testLegoACMEDNSPreseeded},
		{"lego-acme-dns-first-use", testLegoACMEDNSFirstUse},
		{"lego-httpreq-default", func(t *testing.T, s *stack) {
			testLegoHTTPReq(t, s, httpreqVariant{name: "lego-cli-httpreq-default"})
		}},
		{"lego-httpreq-raw", func(t *testing.T, s *stack) {
			testLegoHTTPReq(t, s, httpreqVariant{name: "lego-cli-httpreq-raw", env: []string{"HTTPREQ_MODE=RAW"}})
		}},
		{"lego-httpreq-no-cname", func(t *testing.T, s *stack) {
			testLegoHTTPReq(t, s, httpreqVariant{name: "lego-cli-httpreq-no-cname", env: []string{"LEGO_DISABLE_CNAME_SUPPORT=true"}})
		}},
		{"certbot-acme-dns-hook", testCertbotHook},
		{"acme.sh-dns_acmedns", testAcmeSh},
		{"go-nrdcg-goacmedns", testNrdcgGoacmedns},
		{"go-cpu-goacmedns", testCPUGoacmedns},
		{"nsupdate-tsig", testNsupdate},
		{"lego-rfc2136", testLegoRFC2136},
		{"certbot-nsupdate-hook", testCertbotNsupdate},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// runClient runs a client process with env added to the test's
// environment, stores its combined output in dir/<name>.log and returns it.
// The error carries the exit status; callers decide whether failure was
// expected.
func runClient(t *testing.T, dir, name string, env []string, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), loopbackEnv()...), env...)
	out, err := cmd.CombinedOutput()
	logPath := filepath.Join(dir, name+".log")
	if werr := os.WriteFile(logPath, out, 0o600); werr != nil {
		t.Errorf("keep %s output: %v", name, werr)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: %w after %s", name, ctx.Err(), clientTimeout)
	} else if err != nil {
		err = fmt.Errorf("%s %s: %w", filepath.Base(path), strings.Join(args, " "), err)
	}
	return string(out), err
}

// tail returns the last n lines of s for failure messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
