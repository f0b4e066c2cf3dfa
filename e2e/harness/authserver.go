package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// AuthServerOptions configures a reference authoritative server (Knot or
// NSD).
type AuthServerOptions struct {
	// Zones to serve; at least one. Reload acts on the first.
	Zones []Zone
	// Port to listen on, 127.0.0.1 UDP and TCP; 0 picks one.
	Port int
	// ExtraServer lines are appended to the configuration's server
	// section verbatim.
	ExtraServer []string
	// KnotTopLevel lines are added to knot.conf at the top level verbatim
	// (sections such as policy: or mod-onlinesign:); NSD ignores them.
	KnotTopLevel []string
	// StartTimeout (also the reload timeout) defaults to
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// AuthServer is a running reference authoritative server serving zones from
// files in a temp dir, reloaded through its control tool.
type AuthServer struct {
	// Addr is "127.0.0.1:port" (UDP and TCP).
	Addr       string
	Dir        string
	ConfigPath string
	Proc       *Process

	name    string // in messages: "knot", "nsd"
	auth    *authority
	control string
}

// authServerKind is what differs between Knot and NSD.
type authServerKind struct {
	name, hint         string
	daemon, checker    string // executables; checker may equal control
	control            string
	confName, sockName string
	conf               *template.Template
	// checkArgs and daemonArgs are the checker's and the daemon's
	// arguments for a config file.
	checkArgs, daemonArgs func(confPath string) []string
	// reloadZone makes the running server re-read one zone's file.
	reloadZone func(s *AuthServer, zone string) error
}

// startAuthServer writes the configuration and the zone files, checks the
// configuration with the server's own tool, starts the daemon and waits
// until every zone is served with its SOA serial.
func startAuthServer(t testing.TB, kind authServerKind, opts AuthServerOptions) *AuthServer {
	t.Helper()
	daemon := RequireTool(t, kind.daemon, kind.hint)
	checker := RequireTool(t, kind.checker, kind.hint)
	ctl := RequireTool(t, kind.control, kind.hint)
	dir := t.TempDir()
	zones, err := prepareZones(dir, opts.Zones)
	if err != nil {
		t.Fatalf("harness: %s: %v", kind.name, err)
	}
	sock := filepath.Join(shortTempDir(t), kind.sockName)
	confPath := filepath.Join(dir, kind.confName)
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}

	s, err := startWithRetry(opts.Port == 0, func() (*AuthServer, error) {
		port, err := pickPort(opts.Port)
		if err != nil {
			return nil, err
		}
		auth := &authority{addr: HostPort(port), dir: dir, zones: zones, timeout: timeout}
		type zoneEntry struct {
			Name, File string
			Extra      []string
		}
		var entries []zoneEntry
		for _, z := range zones {
			entries = append(entries, zoneEntry{Name: z.Name, File: auth.zoneFile(z.Name), Extra: z.KnotExtra})
		}
		// Knot keeps its keys (mod-onlinesign) in the database folder,
		// which it does not create.
		if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
			return nil, err
		}
		var b strings.Builder
		err = kind.conf.Execute(&b, map[string]any{
			"Port": port, "Dir": dir, "Control": sock, "Zones": entries, "Extra": opts.ExtraServer, "TopLevel": opts.KnotTopLevel,
		})
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", kind.confName, err)
		}
		if err := writeFile(confPath, b.String(), 0o644); err != nil {
			return nil, err
		}
		if _, err := runTool(10*time.Second, dir, checker, kind.checkArgs(confPath)...); err != nil {
			return nil, fmt.Errorf("%s rejected: %w\n%s", kind.confName, err, b.String())
		}
		p, err := startProcess(ProcessOptions{Name: kind.daemon, Path: daemon, Args: kind.daemonArgs(confPath), Dir: dir})
		if err != nil {
			return nil, err
		}
		s := &AuthServer{Addr: auth.addr, Dir: dir, ConfigPath: confPath, Proc: p, name: kind.name, auth: auth, control: ctl}
		auth.reloadZone = func(zone string) error { return kind.reloadZone(s, zone) }
		if err := p.WaitReady(timeout, auth.waitZones); err != nil {
			_ = p.Stop()
			return nil, err
		}
		return s, nil
	})
	if err != nil {
		t.Fatalf("harness: start %s: %v", kind.daemon, err)
	}
	s.Proc.registerCleanup(t)
	return s
}

// Reload replaces the first zone's file with content (which must carry a new
// SOA serial) and returns once the server serves that serial.
func (s *AuthServer) Reload(content string) error {
	return s.auth.reload(s.auth.defaultZone(), content)
}

// ReloadZone is Reload for a named zone.
func (s *AuthServer) ReloadZone(zone, content string) error {
	return s.auth.reload(zone, content)
}

// Control runs the server's control tool (knotc, nsd-control) against this
// instance, e.g. Control("zone-status").
func (s *AuthServer) Control(args ...string) (string, error) {
	out, err := runTool(10*time.Second, s.Dir, s.control, append([]string{"-c", s.ConfigPath}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", s.name, err)
	}
	return out, nil
}
