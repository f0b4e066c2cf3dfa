package harness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// NSDOptions configures NSD.
type NSDOptions struct {
	// Zones to serve; at least one. Reload acts on the first.
	Zones []Zone
	// Port to listen on, 127.0.0.1 UDP and TCP; 0 picks one.
	Port int
	// ExtraServer lines are appended to the server: clause verbatim.
	ExtraServer []string
	// StartTimeout (also the reload timeout) defaults to
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// NSD is a running NSD, a real authority for the customer zone (it sets the
// AA bit and answers NXDOMAIN, unlike challtestsrv).
type NSD struct {
	// Addr is "127.0.0.1:port" (UDP and TCP).
	Addr       string
	Dir        string
	ConfigPath string
	Proc       *Process

	auth    *authority
	control string
}

// nsdConf follows e2e-recipe.md: no privilege drop, chroot or database, every
// file under the temp dir, control over a unix socket (which needs no keys).
// logfile /dev/stderr puts NSD's log in the process log, which the harness
// quotes on failure.
var nsdConf = template.Must(template.New("nsd.conf").Parse(`server:
    ip-address: 127.0.0.1@{{.Port}}
    do-ip6: no
    reuseport: no
    server-count: 1
    verbosity: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{{.Dir}}"
    zonelistfile: "{{.Dir}}/zone.list"
    xfrdfile: "{{.Dir}}/xfrd.state"
    xfrdir: "{{.Dir}}"
    pidfile: "{{.Dir}}/nsd.pid"
    logfile: "/dev/stderr"
{{- range .Extra}}
    {{.}}
{{- end}}
remote-control:
    control-enable: yes
    control-interface: "{{.Control}}"
{{- range .Zones}}
zone:
    name: "{{.Name}}"
    zonefile: "{{.File}}"
{{- end}}
`))

// StartNSD serves one zone from zoneFileContent with default options.
func StartNSD(t testing.TB, zoneName, zoneFileContent string) *NSD {
	t.Helper()
	return StartNSDWith(t, NSDOptions{Zones: []Zone{{Name: zoneName, Content: zoneFileContent}}})
}

// StartNSDWith writes nsd.conf and the zone files, checks the config with
// nsd-checkconf, starts `nsd -d` and waits until every zone is served with
// its SOA serial.
func StartNSDWith(t testing.TB, opts NSDOptions) *NSD {
	t.Helper()
	bin := RequireTool(t, "nsd", HintNSD)
	check := RequireTool(t, "nsd-checkconf", HintNSD)
	ctl := RequireTool(t, "nsd-control", HintNSD)
	dir := t.TempDir()
	zones, err := prepareZones(dir, opts.Zones)
	if err != nil {
		t.Fatalf("harness: nsd: %v", err)
	}
	sock := filepath.Join(shortTempDir(t), "nsd.ctl")
	confPath := filepath.Join(dir, "nsd.conf")
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}

	n, err := startWithRetry(opts.Port == 0, func() (*NSD, error) {
		port, err := pickPort(opts.Port)
		if err != nil {
			return nil, err
		}
		auth := &authority{addr: HostPort(port), dir: dir, zones: zones, timeout: timeout}
		type zoneEntry struct{ Name, File string }
		var entries []zoneEntry
		for _, z := range zones {
			entries = append(entries, zoneEntry{Name: z.Name, File: auth.zoneFile(z.Name)})
		}
		var b strings.Builder
		err = nsdConf.Execute(&b, map[string]any{
			"Port": port, "Dir": dir, "Control": sock, "Zones": entries, "Extra": opts.ExtraServer,
		})
		if err != nil {
			return nil, fmt.Errorf("render nsd.conf: %w", err)
		}
		if err := writeFile(confPath, b.String(), 0o644); err != nil {
			return nil, err
		}
		if _, err := runTool(10*time.Second, dir, check, confPath); err != nil {
			return nil, fmt.Errorf("nsd.conf rejected: %w\n%s", err, b.String())
		}
		p, err := startProcess(ProcessOptions{Name: "nsd", Path: bin, Args: []string{"-d", "-c", confPath}, Dir: dir})
		if err != nil {
			return nil, err
		}
		n := &NSD{Addr: auth.addr, Dir: dir, ConfigPath: confPath, Proc: p, auth: auth, control: ctl}
		auth.reloadZone = n.reloadZone
		if err := p.WaitReady(timeout, auth.waitZones); err != nil {
			_ = p.Stop()
			return nil, err
		}
		return n, nil
	})
	if err != nil {
		t.Fatalf("harness: start nsd: %v", err)
	}
	n.Proc.registerCleanup(t)
	return n
}

// Reload replaces the first zone's file with content (which must carry a new
// SOA serial) and returns once NSD serves that serial.
func (n *NSD) Reload(content string) error {
	return n.auth.reload(n.auth.defaultZone(), content)
}

// ReloadZone is Reload for a named zone.
func (n *NSD) ReloadZone(zone, content string) error {
	return n.auth.reload(zone, content)
}

// Control runs nsd-control against this instance, e.g. Control("zonestatus").
func (n *NSD) Control(args ...string) (string, error) {
	out, err := runTool(10*time.Second, n.Dir, n.control, append([]string{"-c", n.ConfigPath}, args...)...)
	if err != nil {
		return out, fmt.Errorf("nsd: %w", err)
	}
	return out, nil
}

// reloadZone asks NSD to re-read zone and waits until the server processes
// that served the old data have exited. NSD answers from forked children and
// a reload replaces them; while an old one lives, the kernel may still hand
// it a query, so the old serial can reappear after the new one was seen.
func (n *NSD) reloadZone(zone string) error {
	old, treeErr := groupLeaves(n.Proc.PID)
	if _, err := n.Control("reload", strings.TrimSuffix(zone, ".")); err != nil {
		return err
	}
	if treeErr != nil {
		return nil // cannot tell; the serial wait is all we have
	}
	return poll(n.auth.timeout, 5*time.Millisecond, func() error {
		for _, pid := range old {
			if alive(pid) {
				return fmt.Errorf("nsd server process %d from before the reload still running (zone rejected? see the nsd log)", pid)
			}
		}
		return nil
	})
}
