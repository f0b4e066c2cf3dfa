package clients

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/delegated/delegated/e2e/harness"
)

// Install hints for tools the harness has no constant for.
const (
	hintPython = "apt-get install -y --no-install-recommends python3 python3-requests"
	hintCurl   = "apt-get install -y --no-install-recommends curl"
)

// requirePythonModule is harness.RequireTool for a Python module: skip
// locally, fail under CI, with the install command.
func requirePythonModule(t *testing.T, python, module, hint string) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import "+module).CombinedOutput(); err != nil {
		msg := "python module " + module + " missing (" + strings.TrimSpace(string(out)) + "); install with: " + hint
		if os.Getenv(harness.EnvCI) != "" {
			t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
		}
		t.Skip(msg)
	}
}

// certbotTool returns the certbot binary and its version ("2.1.0").
func certbotTool(t *testing.T) (bin, version string) {
	t.Helper()
	bin = harness.RequireTool(t, "certbot", harness.HintCertbot)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("certbot --version: %v\n%s", err, out)
	}
	f := strings.Fields(string(out)) // "certbot 2.1.0"
	if len(f) != 2 {
		t.Fatalf("certbot --version: unexpected output %q", out)
	}
	return bin, f[1]
}

// testdataPath returns the absolute path of a file in testdata/ (tests run
// in the package folder).
func testdataPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookCommand is a certbot hook command line: the executable script, then
// its arguments. certbot runs it through the shell but first looks its
// first word up as a file (split at whitespace, unquoted), so the script is
// run by its #! line and its path must not contain whitespace.
func hookCommand(t *testing.T, script string, args ...string) string {
	t.Helper()
	if strings.ContainsAny(script, " \t\n'\"") {
		t.Fatalf("certbot cannot run a hook from %q: whitespace or quotes in the path", script)
	}
	if fi, err := os.Stat(script); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("hook %s must exist and be executable (git keeps the mode): %v", script, err)
	}
	return strings.Join(append([]string{script}, args...), " ")
}

// certbotRun is one certbot invocation.
type certbotRun struct {
	bin string
	// dir holds certbot's state (fresh, hence a fresh ACME account) and
	// its output.
	dir string
	// env is added to certbot's environment; hooks inherit it.
	env []string
	// authHook and cleanupHook are hook command lines (hookCommand);
	// cleanupHook may be empty.
	authHook, cleanupHook string
}

// runCertbot is the recipe's certbot command for one order of the apex and
// the wildcard. It records the run's duration in is and returns the issued
// fullchain.pem.
func (s *stack) runCertbot(t *testing.T, is *issuance, r certbotRun) []byte {
	t.Helper()
	dir := r.dir
	args := []string{
		"certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
		"--server", s.ca.DirectoryURL,
		"--config-dir", filepath.Join(dir, "cb", "config"),
		"--work-dir", filepath.Join(dir, "cb", "work"),
		"--logs-dir", filepath.Join(dir, "cb", "logs"),
		"--manual", "--preferred-challenges", "dns",
		"--manual-auth-hook", r.authHook,
		"-d", customerDomain, "-d", "*." + customerDomain,
	}
	if r.cleanupHook != "" {
		args = append(args, "--manual-cleanup-hook", r.cleanupHook)
	}
	env := append([]string{"REQUESTS_CA_BUNDLE=" + s.ca.MiniCAPath}, r.env...)
	var out string
	err := is.measure(func() error {
		var err error
		out, err = runClient(t, dir, "certbot", env, r.bin, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(out, 60))
	}
	chain, err := readOutput(filepath.Join(dir, "cb", "config", "live", customerDomain, "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// hookLog reads the lines a hook script appended to its log.
func hookLog(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("hook log: %v", err)
	}
	return lines
}

// testCertbotHook: certbot with auth and cleanup hooks in the style of
// acme-dns-auth.py. The hook registers the account first (exactly 201
// expected), the customer creates the CNAME it prints, then certbot runs
// the hook for both names (exactly 200 expected from /update) and the
// cleanup hook removes both values through /cleanup.
func testCertbotHook(t *testing.T, s *stack) {
	bin, version := certbotTool(t)
	python := harness.RequireTool(t, "python3", hintPython)
	requirePythonModule(t, python, "requests", hintPython)
	is := trackIssuance(t, "certbot-acme-dns-hook", version)

	dir := t.TempDir()
	hook := testdataPath(t, "acmedns_certbot_hook.py")
	storage := filepath.Join(dir, "acmedns.json")
	logPath := filepath.Join(dir, "hook.log")
	env := []string{"ACMEDNS_URL=" + s.apiURL, "ACMEDNS_STORAGE=" + storage, "ACMEDNS_HOOK_LOG=" + logPath}

	out, err := runClient(t, dir, "hook-register", env, python, hook, "register", customerDomain)
	if err != nil {
		t.Fatalf("hook register: %v\n%s", err, out)
	}
	m := cnameInstruction.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hook register printed no CNAME instruction:\n%s", out)
	}
	b, err := os.ReadFile(storage)
	if err != nil {
		t.Fatal(err)
	}
	var accounts map[string]account
	if err := json.Unmarshal(b, &accounts); err != nil {
		t.Fatalf("hook storage: %v\n%s", err, b)
	}
	acct, ok := accounts[customerDomain]
	if !ok || acct.FullDomain+"." != m[1] {
		t.Fatalf("hook stored %s, printed CNAME target %q", b, m[1])
	}
	checkHookRejection(t, s.apiURL, dir, hook, acct)
	s.delegate(t, acct.FullDomain)

	chain := s.runCertbot(t, is, certbotRun{
		bin: bin, dir: dir, env: env,
		authHook: hookCommand(t, hook, "auth"), cleanupHook: hookCommand(t, hook, "cleanup"),
	})
	s.verifyCertificate(t, chain)

	lines := hookLog(t, logPath)
	cleanupOK := regexp.MustCompile(`^cleanup ` + regexp.QuoteMeta(customerDomain) + ` 2\d\d$`)
	var auths, cleanups int
	for _, l := range lines {
		switch {
		case l == "auth "+customerDomain+" 200":
			auths++
		case cleanupOK.MatchString(l):
			cleanups++
		}
	}
	if auths != 2 || cleanups != 2 {
		t.Errorf("hook calls %q: want 2 auth with 200 and 2 cleanup with 2xx", lines)
	}
	if vals := s.servedValues(t, acct.FullDomain); len(vals) != 0 {
		t.Errorf("after the cleanup hook delegated still serves %s TXT %q", acct.FullDomain, vals)
	}
	is.markOK()
}

// checkHookRejection runs the hook's update with a wrong key: the hook
// decodes the error body with .json(), so delegated's 401 must carry a JSON
// body and the hook must stop with its message, not a Python traceback.
func checkHookRejection(t *testing.T, apiURL, dir, hook string, acct account) {
	t.Helper()
	bad := acct
	bad.Password = strings.Repeat("x", len(acct.Password))
	b, err := json.Marshal(map[string]account{customerDomain: bad})
	if err != nil {
		t.Fatal(err)
	}
	badStorage := filepath.Join(dir, "acmedns-wrong-key.json")
	if err := os.WriteFile(badStorage, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"ACMEDNS_URL=" + apiURL, "ACMEDNS_STORAGE=" + badStorage,
		"CERTBOT_DOMAIN=" + customerDomain, "CERTBOT_VALIDATION=" + strings.Repeat("A", 43),
	}
	out, err := runClient(t, dir, "hook-wrong-key", env, hook, "auth")
	if err == nil {
		t.Fatalf("hook accepted an update with a wrong key:\n%s", out)
	}
	if strings.Contains(out, "Traceback") || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, `"error": "forbidden"`) {
		t.Errorf("hook with a wrong key: want its HTTP 401 message with the JSON error body, got:\n%s", out)
	}
}

// acmeshCNAME is the instruction acme.sh's dns_acmedns prints after its
// registration.
var acmeshCNAME = regexp.MustCompile(`# Create ` + regexp.QuoteMeta(challengeName) + ` CNAME (\S+) DNS entry #`)

// testAcmeSh: acme.sh's dns_acmedns logic (testdata/acmesh_dns_acmedns.sh)
// registers and reads the one-line reply with acme.sh's sed expressions,
// then serves as certbot's auth hook, sending /update with the form content
// type and accepting it only if the reply quotes the value.
func testAcmeSh(t *testing.T, s *stack) {
	bin, version := certbotTool(t)
	sh := harness.RequireTool(t, "sh", "apt-get install -y dash")
	harness.RequireTool(t, "sed", "apt-get install -y sed")
	harness.RequireTool(t, "curl", hintCurl)
	is := trackIssuance(t, "acme.sh-dns_acmedns-via-certbot", "certbot-"+version)

	dir := t.TempDir()
	script := testdataPath(t, "acmesh_dns_acmedns.sh")
	envFile := filepath.Join(dir, "account.env")
	raw := filepath.Join(dir, "register.json")
	logPath := filepath.Join(dir, "hook.log")
	env := []string{"ACMEDNS_BASE_URL=" + s.apiURL, "ACMEDNS_ENV=" + envFile, "ACMEDNS_RAW=" + raw, "ACMEDNS_HOOK_LOG=" + logPath}

	out, err := runClient(t, dir, "acmesh-register", env, sh, script, "register", challengeName)
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	body, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.TrimRight(string(body), "\n"), "\n") {
		t.Errorf("register reply spans several lines; acme.sh's sed needs one:\n%s", body)
	}
	var want account
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("register reply: %v\n%s", err, body)
	}
	got := readEnvFile(t, envFile)
	for k, v := range map[string]string{
		"ACMEDNS_USERNAME": want.Username, "ACMEDNS_PASSWORD": want.Password,
		"ACMEDNS_SUBDOMAIN": want.SubDomain, "ACMEDNS_FULLDOMAIN": want.FullDomain,
	} {
		if got[k] != v {
			t.Errorf("sed read %s=%q, JSON says %q", k, got[k], v)
		}
	}
	m := acmeshCNAME.FindStringSubmatch(out)
	if m == nil || m[1] != want.FullDomain {
		t.Fatalf("register output lacks the CNAME to %s:\n%s", want.FullDomain, out)
	}
	s.delegate(t, want.FullDomain)

	// acme.sh's dns_acmedns_rm removes nothing, so there is no cleanup hook.
	chain := s.runCertbot(t, is, certbotRun{bin: bin, dir: dir, env: env, authHook: hookCommand(t, script, "certbot-auth")})
	s.verifyCertificate(t, chain)
	if lines := hookLog(t, logPath); len(lines) != 2 {
		t.Errorf("hook log %q: want two successful adds", lines)
	}
	is.markOK()
}

// readEnvFile parses the KEY='value' lines the acme.sh script writes.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		vals[k] = strings.Trim(v, "'")
	}
	return vals
}
