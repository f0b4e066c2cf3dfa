// Tests of the bundled issuer end to end (see stack.go).
package e2eissuer_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

var recordRE = regexp.MustCompile(`(?m)^(_acme-challenge\.[a-z0-9.-]+\.) CNAME ([0-9a-f-]{36}\.auth\.example\.test\.)$`)

// records parses the zone-file lines the CLI printed.
func records(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, r := range recordRE.FindAllStringSubmatch(out, -1) {
		m[r[1]] = r[2]
	}
	return m
}

func TestIssuer(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	names := []string{"example.test", "*.example.test", "www.example.test"}
	args := []string{"issue", "--cert-name", "example.test", "--no-wait"}
	for _, n := range names {
		args = append(args, "-d", n)
	}

	// 1. No CNAME: pending delegation naming the missing records; no order.
	out, code := s.CLI(args...)
	t.Logf("delegated %s\n%s", strings.Join(args, " "), out)
	if code != 0 {
		t.Fatalf("issue --no-wait: exit %d", code)
	}
	recs := records(t, out)
	if len(recs) != 2 || recs["_acme-challenge.example.test."] == "" || recs["_acme-challenge.www.example.test."] == "" {
		t.Fatalf("want one record per base name (apex and wildcard share one), got %v", recs)
	}
	if !strings.Contains(out, "status: pending delegation") || !strings.Contains(out, "_acme-challenge.example.test.: no record; create _acme-challenge.example.test. CNAME "+recs["_acme-challenge.example.test."]) {
		t.Fatalf("want pending delegation naming the missing record, got:\n%s", out)
	}
	if n := s.PebbleOrders(); n != 0 {
		t.Fatalf("Pebble received %d orders while delegation was missing", n)
	}

	// 2. Wrong target: the message names expected and found.
	wrong := "elsewhere.auth.example.test."
	s.SetCNAMEs(map[string]string{"_acme-challenge.example.test.": wrong})
	out, code = s.CLI("delegation", "--cert-name", "example.test")
	t.Logf("delegated delegation --cert-name example.test\n%s", out)
	if code == 0 {
		t.Fatalf("delegation with a wrong target exited 0")
	}
	want := fmt.Sprintf("_acme-challenge.example.test.: CNAME points to %s, expected %s", wrong, recs["_acme-challenge.example.test."])
	if !strings.Contains(out, want) {
		t.Fatalf("want %q in:\n%s", want, out)
	}
	if n := s.PebbleOrders(); n != 0 {
		t.Fatalf("Pebble received %d orders while delegation was wrong", n)
	}

	// 3. Fix both CNAMEs: the periodic re-check issues without operator action.
	s.SetCNAMEs(recs)
	var c e2e.Cert
	harness.Eventually(t, 60*time.Second, 200*time.Millisecond, "certificate active", func() error {
		var err error
		if c, err = s.Certificate("example.test"); err != nil {
			return err
		}
		if c.Status != "active" {
			return fmt.Errorf("status %q (%s)", c.Status, c.LastError)
		}
		return nil
	})
	checkDeployed(t, s, c, names)
	checkHook(t, s, "example.test", names, 1)

	// 4. With delegation in place, a waiting issue shows its progress.
	args = []string{"issue", "--cert-name", "apex", "-d", "example.test", "-d", "*.example.test"}
	started := time.Now()
	out, code = s.CLI(args...)
	t.Logf("delegated %s (%.2fs)\n%s", strings.Join(args, " "), time.Since(started).Seconds(), out)
	if code != 0 {
		t.Fatalf("issue: exit %d", code)
	}
	// Pebble reuses a valid authorization 1% of the time even with
	// PEBBLE_AUTHZREUSE=0 (it compares rand.Intn(100) > percent), and step
	// 3 validated example.test for this account: "already valid" is right.
	for _, line := range []string{`delegation ✓`, `order ✓`, `authorization ✓ example\.test (already )?valid`, `authorization ✓ \*\.example\.test (already )?valid`, `finalize ✓`, `deployed ✓`, `certificate "apex" is active`} {
		if !regexp.MustCompile(line).MatchString(out) {
			t.Errorf("progress lacks %q", line)
		}
	}
	checkDeployed(t, s, mustCert(t, s, "apex"), []string{"example.test", "*.example.test"})

	// 5. Two orders for different names at once share no state.
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for k, d := range []string{"www.example.test", "*.example.test"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[k], codes[k] = s.CLI("issue", "--cert-name", fmt.Sprintf("concurrent-%d", k), "-d", d)
		}()
	}
	wg.Wait()
	for k := range outs {
		if codes[k] != 0 {
			t.Errorf("concurrent issue %d: exit %d\n%s", k, codes[k], outs[k])
		}
	}
	checkDeployed(t, s, mustCert(t, s, "concurrent-0"), []string{"www.example.test"})
	checkDeployed(t, s, mustCert(t, s, "concurrent-1"), []string{"*.example.test"})

	// Changing a certificate's domains re-issues it under the same name.
	if out, code := s.CLI("issue", "--cert-name", "concurrent-0", "-d", "www.example.test", "-d", "example.test"); code != 0 {
		t.Fatalf("re-issue with other domains: exit %d: %s", code, out)
	}
	checkDeployed(t, s, mustCert(t, s, "concurrent-0"), []string{"www.example.test", "example.test"})

	// 6. Renew: not due → nothing; --force → a new certificate replaces
	// the files and the hook is told it is a renewal.
	before := mustCert(t, s, "apex")
	out, code = s.CLI("renew", "--cert-name", "apex")
	if code != 0 || !strings.Contains(out, "not due for renewal") {
		t.Errorf("renew when not due: exit %d: %s", code, out)
	}
	out, code = s.CLI("renew", "--cert-name", "apex", "--force")
	t.Logf("delegated renew --cert-name apex --force\n%s", out)
	if code != 0 {
		t.Fatalf("renew --force: exit %d", code)
	}
	apex := mustCert(t, s, "apex")
	if apex.Serial == before.Serial {
		t.Errorf("renew --force kept serial %s", apex.Serial)
	}
	if got := fmt.Sprintf("%x", readCerts(t, apex.Paths.Cert)[0].SerialNumber); got != apex.Serial {
		t.Errorf("deployed serial %s, want the renewed %s", got, apex.Serial)
	}
	hook, _ := os.ReadFile(s.HookLog)
	renewedRuns := 0
	for _, run := range strings.Split(string(hook), "---\n") {
		if strings.Contains(run, "DELEGATED_CERT_NAME=apex\n") && strings.Contains(run, "DELEGATED_RENEWED=1\n") &&
			strings.Contains(run, "DELEGATED_FULLCHAIN_PATH="+apex.Paths.FullChain+"\n") {
			renewedRuns++
		}
	}
	if renewedRuns != 1 {
		t.Errorf("%d hook runs for apex with DELEGATED_RENEWED=1, want 1:\n%s", renewedRuns, hook)
	}

	// 7. Revoke with a reason: Pebble reports it revoked; status revoked.
	out, code = s.CLI("revoke", "--cert-name", "apex", "--reason", "keycompromise")
	t.Logf("delegated revoke --cert-name apex --reason keycompromise\n%s", out)
	if code != 0 {
		t.Fatalf("revoke: exit %d", code)
	}
	serial, ok := new(big.Int).SetString(apex.Serial, 16)
	if !ok {
		t.Fatalf("serial %q", apex.Serial)
	}
	st, err := s.Pebble.CertStatus(serial)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "Revoked" || st.Reason == nil || *st.Reason != 1 {
		t.Errorf("Pebble: status %q reason %v, want Revoked with reason 1 (keyCompromise)", st.Status, st.Reason)
	}
	if got := mustCert(t, s, "apex").Status; got != "revoked" {
		t.Errorf("status %q after revoke, want revoked", got)
	}

	// The statuses, with the same words, in /metrics.
	resp, err := http.Get(s.APIURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`delegated_certificates{status="revoked"} 1`, `delegated_certificates{status="active"} 3`, `delegated_certificates{status="pending delegation"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// 8. Delete asks first: no answer (stdin closed) or "n" keeps the
	// certificate; "y" deletes it, files and stored material.
	out, code = s.CLI("delete", "--cert-name", "apex")
	if code != 2 || !strings.Contains(out, "Delete certificate \"apex\" (example.test, *.example.test)?") || !strings.Contains(out, "repeat with --yes") {
		t.Errorf("delete with stdin closed: exit %d, want 2 with the question and the way round it:\n%s", code, out)
	}
	out, code = s.CLIAnswering("n\n", "delete", "--cert-name", "apex")
	if code != 1 || !strings.Contains(out, `not deleted: "apex" kept`) {
		t.Errorf("delete answered n: exit %d, want 1:\n%s", code, out)
	}
	if _, err := os.Stat(apex.Paths.PrivKey); err != nil {
		t.Fatalf("apex's key is gone after delete was refused: %v", err)
	}
	out, code = s.CLIAnswering("y\n", "delete", "--cert-name", "apex")
	t.Logf("delegated delete --cert-name apex (answered y)\n%s", out)
	if code != 0 {
		t.Fatalf("delete answered y: exit %d", code)
	}
	if _, err := os.Stat(apex.Paths.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after delete (%v)", apex.Paths.Dir, err)
	}
	if _, err := s.Certificate("apex"); err == nil {
		t.Errorf("apex still listed after delete")
	}
	// example.test's challenge subdomain is still used by other
	// certificates, so it keeps answering.
	if m, err := harness.Query(s.DNSAddr, recs["_acme-challenge.example.test."], dns.TypeTXT); err != nil || m.Rcode != dns.RcodeSuccess {
		t.Errorf("shared challenge subdomain after deleting apex: %v %v", m, err)
	}
	// Deleting the last certificates using www.example.test releases its
	// subdomain: it stops answering.
	for _, n := range []string{"example.test", "concurrent-0"} {
		if out, code := s.CLI("delete", "--cert-name", n, "--yes"); code != 0 {
			t.Fatalf("delete %s: exit %d: %s", n, code, out)
		}
	}
	m, err := harness.Query(s.DNSAddr, recs["_acme-challenge.www.example.test."], dns.TypeTXT)
	if err != nil || m.Rcode != dns.RcodeNameError {
		t.Errorf("released challenge subdomain: %v %v, want NXDOMAIN", m, err)
	}
}

// checkDeployed verifies files, modes, the chain against Pebble's root and
// the exact names.
func checkDeployed(t *testing.T, s *e2e.Stack, c e2e.Cert, names []string) {
	t.Helper()
	for path, mode := range map[string]os.FileMode{c.Paths.Cert: 0o644, c.Paths.Chain: 0o644, c.Paths.FullChain: 0o644, c.Paths.PrivKey: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("deployed file: %v", err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if c.Paths.FullChain != filepath.Join(s.DeployDir, "live", c.Name, "fullchain.pem") {
		t.Errorf("fullchain path %s not under %s/live/%s", c.Paths.FullChain, s.DeployDir, c.Name)
	}
	certs := readCerts(t, c.Paths.FullChain)
	if len(certs) < 2 {
		t.Fatalf("fullchain holds %d certificates, want leaf and chain", len(certs))
	}
	if err := verifiesAgainst(t, c, s.Pebble); err != nil {
		t.Errorf("fullchain does not verify against Pebble's root: %v", err)
	}
	got := slices.Clone(certs[0].DNSNames)
	want := slices.Clone(names)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("certificate names %v, want exactly %v", got, want)
	}
	key, err := os.ReadFile(c.Paths.PrivKey)
	if err != nil || !bytes.Contains(key, []byte("PRIVATE KEY")) {
		t.Errorf("privkey.pem: %v %q", err, key)
	}
}

// checkHook verifies the hook ran times times for name with its environment.
func checkHook(t *testing.T, s *e2e.Stack, name string, domains []string, times int) {
	t.Helper()
	b, err := os.ReadFile(s.HookLog)
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	runs := 0
	for _, run := range strings.Split(string(b), "---\n") {
		if !strings.Contains(run, "DELEGATED_CERT_NAME="+name+"\n") {
			continue
		}
		runs++
		dir := filepath.Join(s.DeployDir, "live", name)
		for _, want := range []string{
			"DELEGATED_DOMAINS=" + strings.Join(domains, " "),
			"DELEGATED_FULLCHAIN_PATH=" + filepath.Join(dir, "fullchain.pem"),
			"DELEGATED_KEY_PATH=" + filepath.Join(dir, "privkey.pem"),
			"DELEGATED_CERT_PATH=" + filepath.Join(dir, "cert.pem"),
			"DELEGATED_CHAIN_PATH=" + filepath.Join(dir, "chain.pem"),
			"DELEGATED_RENEWED=0",
			"RENEWED_LINEAGE=" + dir,
		} {
			if !strings.Contains(run, want+"\n") {
				t.Errorf("hook environment lacks %q:\n%s", want, run)
			}
		}
	}
	if runs != times {
		t.Errorf("hook ran %d times for %s, want %d", runs, name, times)
	}
}

// TestOperatorAPIRefuses: the socket is owner-only, and the HTTP listener
// serves the operator API only with the token.
func TestOperatorAPIRefuses(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	fi, err := os.Stat(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	// Another user is refused by the socket's mode.
	if os.Geteuid() == 0 {
		cmd := exec.Command(s.Bin, "certificates", "--socket", s.Socket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "permission denied") {
			t.Errorf("as nobody: err %v, output %s; want permission denied", err, out)
		}
	} else {
		t.Logf("not root: cannot switch user to test another user's access; mode checked")
	}
	// The owner may.
	if out, code := s.CLI("certificates"); code != 0 {
		t.Errorf("owner: exit %d: %s", code, out)
	}
	// The CLI over HTTP with the token file.
	if out, code := s.CLI("certificates", "--url", s.APIURL, "--token-file", filepath.Join(s.Dir, "operator.token")); code != 0 {
		t.Errorf("certificates --url with the token: exit %d: %s", code, out)
	}
	// HTTP: no token, a wrong token → 401; the right one → 200.
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"basic auth", "Basic ZTJlOmUyZQ==", http.StatusUnauthorized},
		{"token", "Bearer " + s.Token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.APIURL+"/v1/certificates", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func mustCert(t *testing.T, s *e2e.Stack, name string) e2e.Cert {
	t.Helper()
	c, err := s.Certificate(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readCerts parses every certificate of a PEM file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		t.Fatalf("%s holds no certificate", path)
	}
	return certs
}
