// Package e2eissuer starts the bundled issuer's end-to-end stack: the real
// delegated binary (built from this module), Pebble, unbound, and NSD as
// the customer's zone example.test, all on loopback. The tests in this
// folder and bench/issue use it.
package e2eissuer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// Zone is delegated's zone in the stack.
const Zone = "auth.example.test"

// Stack is one running set of components.
type Stack struct {
	// Bin is the delegated binary; Dir the daemon's folder (0755, so that
	// another user reaches the socket and is refused by its own mode).
	Bin, Dir string
	// Config is the daemon's config.toml; Socket its operator socket.
	Config, Socket string
	// DNSAddr is delegated's DNS listener.
	DNSAddr string
	// APIURL is the HTTP API's base URL; Token the operator token.
	APIURL, Token string
	// HookLog collects the deploy hook's environment, one run per block
	// ended by "---".
	HookLog string
	// DeployDir holds live/<name>/.
	DeployDir string
	Customer  *harness.NSD
	Resolver  *harness.Unbound
	Pebble    *harness.Pebble
	// Pebble2 is the second CA (Options.SecondCA), with its own root.
	Pebble2 *harness.Pebble
	Daemon  *harness.Process

	// PrevLogs are the logs of runs before a Restart.
	PrevLogs []string
	// DS is the zone's DS record (Options.DNSSEC), the resolver's trust
	// anchor.
	DS string

	t          testing.TB
	pebbleOpts harness.PebbleOptions
	serial     uint32
	dnsAddr    string
	runs       int
}

// Options tunes Start.
type Options struct {
	// DelegationRecheck is [issuer] delegation_recheck; default "1s".
	DelegationRecheck string
	// Validity of Pebble's certificates; 0 means Pebble's 90 days.
	Validity time.Duration
	// PebbleEnv is added to Pebble's environment (e.g. VA sleeps).
	PebbleEnv []string
	// PebbleModify edits pebble.json (EAB, profiles).
	PebbleModify func(*harness.PebbleConfig)
	// IssuerExtra lines are appended to the [issuer] section; relative
	// paths in them resolve against Stack.Dir, where WriteFiles puts files.
	IssuerExtra string
	// DeferPebble leaves the CA down until Stack.StartPebble.
	DeferPebble bool
	// Files are written into Stack.Dir (mode 0600) before the daemon starts.
	Files map[string]string
	// ResolverExtra lines are added to unbound's server clause.
	ResolverExtra []string
	// ExtraStubs are more zones unbound sends to the given servers (e.g.
	// customers whose name servers never answer).
	ExtraStubs map[string]string
	// DNSSEC signs the zone: the key is made (`delegated dnssec ds`)
	// before the resolver starts, which validates with its DS as trust
	// anchor (Stack.DS), so the CA sees only validated answers.
	DNSSEC bool
	// CAFront, when set, puts a TLS proxy between the daemon and Pebble
	// whose handler is CAFront(pebble): it sees, and may lose, every
	// request the daemon sends the CA. Not with DeferPebble.
	CAFront func(pebble http.Handler) http.Handler
	// SecondCA starts a second Pebble (its own root) and configures the
	// two as [[issuer.ca]] tables "first" (Pebble, through CAFront when
	// set) and "second" (Pebble2), each with CAAIdentities[k] as its
	// caa_identities when given.
	SecondCA      bool
	CAAIdentities [2][]string
}

// DeadServers opens n name servers that never answer (a UDP socket that
// exists, so no ICMP port unreachable, and that nothing reads) and returns
// unbound stubs sending dK.dead.test to them, for Options.ExtraStubs.
func DeadServers(t testing.TB, n int) map[string]string {
	t.Helper()
	stubs := map[string]string{}
	for k := range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		stubs[fmt.Sprintf("d%d.dead.test", k)] = pc.LocalAddr().String()
	}
	return stubs
}

// BuildDelegated builds the daemon into a fresh world-readable directory.
func BuildDelegated(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "delegated-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "delegated")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/delegated/delegated/cmd/delegated").CombinedOutput()
	if err != nil {
		t.Fatalf("go build delegated: %v\n%s", err, out)
	}
	return bin
}

// Start builds delegated and starts the stack; everything stops at the end
// of the test.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	if opts.DelegationRecheck == "" {
		opts.DelegationRecheck = "1s"
	}
	s := &Stack{t: t, Bin: BuildDelegated(t), serial: 1}
	dir, err := os.MkdirTemp("", "delegated-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Dir = dir
	s.Customer = harness.StartNSD(t, "example.test", CustomerZone(s.serial, nil))
	dnsAddr := harness.FreeAddr(t)
	apiAddr := harness.FreeAddr(t)
	var anchors []string
	if opts.DNSSEC {
		s.DS = s.makeDNSSECKey()
		anchors = []string{s.DS}
	}
	stubs := map[string]string{"example.test": s.Customer.Addr, Zone: dnsAddr}
	for zone, addr := range opts.ExtraStubs {
		stubs[zone] = addr
	}
	s.Resolver = harness.StartUnboundWith(t, harness.UnboundOptions{
		Stubs:        stubs,
		ReadyZone:    "example.test",
		TrustAnchors: anchors,
		ExtraServer:  opts.ResolverExtra,
	})
	s.pebbleOpts = harness.PebbleOptions{DNSServer: s.Resolver.Addr, ValidityPeriod: opts.Validity, Modify: opts.PebbleModify, Env: opts.PebbleEnv}
	directory, minica := "", ""
	if opts.DeferPebble {
		// The CA is down until StartPebble: fixed ports, its TLS CA
		// copied from the Pebble module now.
		s.pebbleOpts.ListenPort, s.pebbleOpts.ManagementPort = harness.FreePort(t), harness.FreePort(t)
		directory = "https://" + harness.HostPort(s.pebbleOpts.ListenPort) + "/dir"
		src, err := harness.PebbleSourceDir()
		if err != nil {
			t.Skipf("%v; install with: %s", err, harness.HintPebbleModule)
		}
		b, err := os.ReadFile(filepath.Join(src, "test/certs/pebble.minica.pem"))
		if err != nil {
			t.Fatal(err)
		}
		minica = filepath.Join(dir, "pebble-minica.pem")
		if err := os.WriteFile(minica, b, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		s.StartPebble()
		directory, minica = s.Pebble.DirectoryURL, s.Pebble.MiniCAPath
		if opts.CAFront != nil {
			directory, minica = s.frontCA(opts.CAFront)
		}
	}

	s.HookLog = filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\nenv | grep -E '^(DELEGATED_|RENEWED_)' | sort >> " + s.HookLog + "\necho --- >> " + s.HookLog + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Token = "e2e-operator-token-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "operator.token"), []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.DeployDir = filepath.Join(dir, "certs")
	s.Socket = filepath.Join(dir, "delegated.sock")
	s.APIURL = "http://" + apiAddr
	dc := DaemonConfig{
		DNS: dnsAddr, API: apiAddr, StoreDSN: "delegated.db",
		Directory: directory, CARoots: minica, Resolver: s.Resolver.Addr, AuthoritativePort: Port(t, s.Customer.Addr),
		DeployHook: hook, DelegationRecheck: opts.DelegationRecheck, IssuerExtra: opts.IssuerExtra,
		DNSSEC: opts.DNSSEC,
	}
	if opts.SecondCA {
		s.Pebble2 = harness.StartPebble(t, s.pebbleOpts)
		dc.CAs = []DaemonCA{
			{Name: "first", Directory: directory, CARoots: minica, CAAIdentities: opts.CAAIdentities[0]},
			{Name: "second", Directory: s.Pebble2.DirectoryURL, CARoots: s.Pebble2.MiniCAPath, CAAIdentities: opts.CAAIdentities[1]},
		}
	}
	cfg := dc.TOML()
	for name, content := range opts.Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.Config = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(s.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.dnsAddr, s.DNSAddr = dnsAddr, dnsAddr
	s.startDaemon()
	return s
}

// DaemonConfig is the config.toml of a test daemon serving Zone with the
// bundled issuer on, its CA's DNS-01 checks going through Resolver and the
// customer's zone served on 127.0.0.1:AuthoritativePort.
type DaemonConfig struct {
	DNS, API string
	// StoreDriver "" is SQLite.
	StoreDriver, StoreDSN        string
	Directory, CARoots, Resolver string
	AuthoritativePort            int
	// DeployHook is optional.
	DeployHook        string
	DelegationRecheck string
	// IssuerExtra is appended to [issuer] verbatim.
	IssuerExtra string
	// Zone is the daemon's zone; "" means Zone.
	Zone string
	// DNSSEC sets [zone] dnssec = true.
	DNSSEC bool
	// CAs, when set, replace Directory and CARoots with [[issuer.ca]]
	// tables.
	CAs []DaemonCA
}

// DaemonCA is one [[issuer.ca]] table.
type DaemonCA struct {
	Name, Directory, CARoots string
	CAAIdentities            []string
}

// TOML renders the configuration file.
func (c DaemonConfig) TOML() string {
	zone := c.Zone
	if zone == "" {
		zone = Zone
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[zone]\ndomain = %q\nnsname = %q\nrecords = [\"%s. A 127.0.0.1\"]\n", zone, zone, zone)
	if c.DNSSEC {
		b.WriteString("dnssec = true\n")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "[dns]\nlisten = [%q]\n\n[api]\nlisten = [%q]\n\n", c.DNS, c.API)
	b.WriteString("[store]\n")
	if c.StoreDriver != "" {
		fmt.Fprintf(&b, "driver = %q\n", c.StoreDriver)
	}
	fmt.Fprintf(&b, "dsn = %q\n\n", c.StoreDSN)
	if len(c.CAs) == 0 {
		fmt.Fprintf(&b, "[issuer]\nemail = \"e2e@example.test\"\ndirectory = %q\nca_roots = [%q]\nresolvers = [%q]\n", c.Directory, c.CARoots, c.Resolver)
	} else {
		fmt.Fprintf(&b, "[issuer]\nresolvers = [%q]\n", c.Resolver)
	}
	fmt.Fprintf(&b, "authoritative_port = %d\ndeploy_dir = \"certs\"\n", c.AuthoritativePort)
	if c.DeployHook != "" {
		fmt.Fprintf(&b, "deploy_hook = %q\n", c.DeployHook)
	}
	fmt.Fprintf(&b, "delegation_recheck = %q\noperator_token_file = \"operator.token\"\n%s\n", c.DelegationRecheck, c.IssuerExtra)
	// The tables come last: keys after [[issuer.ca]] would belong to it.
	for _, ca := range c.CAs {
		fmt.Fprintf(&b, "\n[[issuer.ca]]\nname = %q\ndirectory = %q\nemail = \"e2e@example.test\"\nca_roots = [%q]\n", ca.Name, ca.Directory, ca.CARoots)
		if len(ca.CAAIdentities) > 0 {
			q := make([]string, len(ca.CAAIdentities))
			for k, id := range ca.CAAIdentities {
				q[k] = strconv.Quote(id)
			}
			fmt.Fprintf(&b, "caa_identities = [%s]\n", strings.Join(q, ", "))
		}
	}
	return b.String()
}

// makeDNSSECKey creates the zone's key in the stack's store, as the
// operator does before telling the parent, and returns its DS record.
func (s *Stack) makeDNSSECKey() string {
	s.t.Helper()
	cfg := filepath.Join(s.Dir, "config.toml")
	pre := fmt.Sprintf("[zone]\ndomain = %q\ndnssec = true\n\n[store]\ndsn = \"delegated.db\"\n", Zone)
	if err := os.WriteFile(cfg, []byte(pre), 0o644); err != nil {
		s.t.Fatal(err)
	}
	out, code := RunCLI(s.t, s.Bin, cfg, time.Minute, "dnssec", "ds")
	if code != 0 {
		s.t.Fatalf("delegated dnssec ds: exit %d\n%s", code, out)
	}
	ds := DSRecords(out)
	if len(ds) != 1 {
		s.t.Fatalf("delegated dnssec ds printed %d DS records, want 1:\n%s", len(ds), out)
	}
	return ds[0]
}

// DSRecords returns the DS records `delegated dnssec ds` printed, without
// their comments.
func DSRecords(out string) []string {
	var ds []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[3] == "DS" {
			rec, _, _ := strings.Cut(line, ";")
			ds = append(ds, strings.Join(strings.Fields(rec), " "))
		}
	}
	return ds
}

// startDaemon starts `delegated serve` and waits until it answers.
func (s *Stack) startDaemon() {
	s.t.Helper()
	s.runs++
	s.Daemon = harness.StartProcess(s.t, harness.ProcessOptions{
		Name: "delegated", Path: s.Bin, Args: []string{"serve", "--config", s.Config}, Dir: s.Dir,
		LogPath: filepath.Join(s.Dir, fmt.Sprintf("delegated-%d.log", s.runs)), GoStacks: true,
	})
	err := s.Daemon.WaitReady(0, func() error {
		if _, err := os.Stat(s.Socket); err != nil {
			return err
		}
		_, err := harness.Query(s.dnsAddr, Zone+".", 6)
		return err
	})
	if err != nil {
		s.t.Fatalf("delegated did not start: %v", err)
	}
}

// Restart stops the daemon (SIGTERM) and starts it again on the same
// store; the previous run's log stays in PrevLogs.
func (s *Stack) Restart() {
	s.t.Helper()
	if err := s.Daemon.Stop(); err != nil {
		s.t.Fatalf("stop delegated: %v", err)
	}
	s.PrevLogs = append(s.PrevLogs, s.Daemon.LogPath)
	s.startDaemon()
}

// Port is the port of addr (host:port), e.g. the customer zone server's:
// its NS record names 127.0.0.1, so the issuer's authoritative check
// needs the port.
func Port(t testing.TB, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// StartPebble starts the CA (at once unless Options.DeferPebble).
func (s *Stack) StartPebble() {
	s.t.Helper()
	s.Pebble = harness.StartPebble(s.t, s.pebbleOpts)
}

// frontCA starts a TLS server on loopback that hands every request to
// front(pebble) and returns its directory URL and a PEM file of its
// certificate for ca_roots. Pebble writes its URLs from the Host header,
// which the proxy passes on, so the daemon's later requests come back
// through the front too.
func (s *Stack) frontCA(front func(http.Handler) http.Handler) (directory, roots string) {
	s.t.Helper()
	target, err := url.Parse(s.Pebble.DirectoryURL)
	if err != nil {
		s.t.Fatal(err)
	}
	target.Path = ""
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Pebble.MiniCA, MinVersion: tls.VersionTLS12}},
	}
	srv := httptest.NewTLSServer(front(proxy))
	s.t.Cleanup(srv.Close)
	roots = filepath.Join(s.Dir, "ca-front.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(roots, certPEM, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return srv.URL + "/dir", roots
}

// CustomerZone is the customer's zone example.test with the given
// _acme-challenge CNAMEs (owner → target) and extra zone-file lines.
func CustomerZone(serial uint32, cnames map[string]string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN example.test.\n$TTL 0\n@ SOA ns hostmaster %d 3600 600 86400 0\n@ NS ns\nns A 127.0.0.1\n@ A 127.0.0.1\nwww A 127.0.0.1\n", serial)
	for owner, target := range cnames {
		fmt.Fprintf(&b, "%s CNAME %s\n", owner, target)
	}
	for _, line := range extra {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// SetCNAMEs replaces the customer zone's CNAMEs (NSD reload, new serial).
func (s *Stack) SetCNAMEs(cnames map[string]string) {
	s.t.Helper()
	s.SetCustomerZone(cnames)
}

// SetCustomerZone replaces the customer zone's CNAMEs and extra lines (CAA
// records, say) at once.
func (s *Stack) SetCustomerZone(cnames map[string]string, extra ...string) {
	s.t.Helper()
	s.serial++
	if err := s.Customer.Reload(CustomerZone(s.serial, cnames, extra...)); err != nil {
		s.t.Fatal(err)
	}
}

// CLI runs a delegated verb with the stack's config and returns its
// combined output and exit status.
func (s *Stack) CLI(args ...string) (string, int) {
	s.t.Helper()
	return RunCLI(s.t, s.Bin, s.Config, 2*time.Minute, args...)
}

// CLIAnswering is CLI with stdin reading answer, for verbs that ask.
func (s *Stack) CLIAnswering(answer string, args ...string) (string, int) {
	s.t.Helper()
	return runCLI(s.t, s.Bin, s.Config, 2*time.Minute, strings.NewReader(answer), args...)
}

// RunCLI runs the delegated binary bin with verb args[0], --config config
// and the rest of args, for at most timeout, and returns its combined output
// and exit status. Failing to run it at all fails the test.
func RunCLI(t testing.TB, bin, config string, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	return runCLI(t, bin, config, timeout, nil, args...)
}

// runCLI is RunCLI with stdin; nil is the null device, as for a cron job.
func runCLI(t testing.TB, bin, config string, timeout time.Duration, stdin io.Reader, args ...string) (string, int) {
	t.Helper()
	full := append([]string{args[0], "--config", config}, args[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("delegated %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// Cert is a certificate as `delegated certificates --json` prints it.
type Cert struct {
	Name      string   `json:"name"`
	Domains   []string `json:"domains"`
	Status    string   `json:"status"`
	LastError string   `json:"last_error"`
	Serial    string   `json:"serial"`
	Challenge string   `json:"challenge"`
	Profile   string   `json:"profile"`
	// CA issued the current certificate; CAPin is the pinned CA.
	CA    string `json:"ca"`
	CAPin string `json:"ca_pin"`
	// RenewAt is set once the renewal is planned (ARI asked).
	RenewAt string `json:"renew_at"`
	Paths   struct {
		Dir, Cert, Chain, FullChain, PrivKey string
	} `json:"paths"`
}

// Certificate returns the named certificate from `delegated certificates --json`.
func (s *Stack) Certificate(name string) (Cert, error) {
	out, code := s.CLI("certificates", "--json")
	if code != 0 {
		return Cert{}, fmt.Errorf("certificates --json: exit %d: %s", code, out)
	}
	var certs []Cert
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		return Cert{}, fmt.Errorf("certificates --json: %w: %s", err, out)
	}
	for _, c := range certs {
		if c.Name == name {
			return c, nil
		}
	}
	return Cert{}, fmt.Errorf("certificate %s not listed: %s", name, out)
}

// PebbleOrders counts the orders Pebble has created (from its log).
func (s *Stack) PebbleOrders() int {
	b, err := os.ReadFile(s.Pebble.Proc.LogPath)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.Count(string(b), "Added order")
}

// PebbleIssued counts the certificates Pebble has issued (from its log).
func (s *Stack) PebbleIssued() int {
	b, err := os.ReadFile(s.Pebble.Proc.LogPath)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.Count(string(b), "Issued certificate serial")
}
