package harness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// KnotOptions configures Knot DNS.
type KnotOptions struct {
	// Zones to serve; at least one. Reload acts on the first.
	Zones []Zone
	// Port to listen on, 127.0.0.1 UDP and TCP; 0 picks one.
	Port int
	// ExtraServer lines are appended to the server: section verbatim.
	ExtraServer []string
	// StartTimeout (also the reload timeout) defaults to
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// Knot is a running knotd, a second real authority for DNS-reference tests.
type Knot struct {
	// Addr is "127.0.0.1:port" (UDP and TCP).
	Addr       string
	Dir        string
	ConfigPath string
	Proc       *Process

	auth    *authority
	control string
}

// knotConf runs knotd unprivileged in the temp dir: user root:root is
// knotd's built-in default (no switch), rundir and storage under the temp
// dir, one worker of each kind (2 cores), log to stderr (the process log).
// The zone is read from its file only: no journal and no write-back
// (zonefile-sync -1), so a reload serves exactly what the test wrote.
var knotConf = template.Must(template.New("knot.conf").Parse(`server:
    rundir: "{{.Dir}}"
    listen: 127.0.0.1@{{.Port}}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
{{- range .Extra}}
    {{.}}
{{- end}}
log:
  - target: stderr
    any: info
database:
    storage: "{{.Dir}}/db"
control:
    listen: "{{.Control}}"
template:
  - id: default
    storage: "{{.Dir}}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{{- range .Zones}}
  - domain: "{{.Name}}"
    file: "{{.File}}"
{{- end}}
`))

// StartKnot serves one zone from zoneFileContent with default options.
func StartKnot(t testing.TB, zoneName, zoneFileContent string) *Knot {
	t.Helper()
	return StartKnotWith(t, KnotOptions{Zones: []Zone{{Name: zoneName, Content: zoneFileContent}}})
}

// StartKnotWith writes knot.conf and the zone files, checks the config with
// `knotc conf-check`, starts knotd and waits until every zone is served with
// its SOA serial.
func StartKnotWith(t testing.TB, opts KnotOptions) *Knot {
	t.Helper()
	bin := RequireTool(t, "knotd", HintKnot)
	ctl := RequireTool(t, "knotc", HintKnot)
	dir := t.TempDir()
	zones, err := prepareZones(dir, opts.Zones)
	if err != nil {
		t.Fatalf("harness: knot: %v", err)
	}
	sock := filepath.Join(shortTempDir(t), "knot.sock")
	confPath := filepath.Join(dir, "knot.conf")
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}

	k, err := startWithRetry(opts.Port == 0, func() (*Knot, error) {
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
		err = knotConf.Execute(&b, map[string]any{
			"Port": port, "Dir": dir, "Control": sock, "Zones": entries, "Extra": opts.ExtraServer,
		})
		if err != nil {
			return nil, fmt.Errorf("render knot.conf: %w", err)
		}
		if err := writeFile(confPath, b.String(), 0o644); err != nil {
			return nil, err
		}
		if _, err := runTool(10*time.Second, dir, ctl, "-c", confPath, "conf-check"); err != nil {
			return nil, fmt.Errorf("knot.conf rejected: %w\n%s", err, b.String())
		}
		p, err := startProcess(ProcessOptions{Name: "knotd", Path: bin, Args: []string{"-c", confPath}, Dir: dir})
		if err != nil {
			return nil, err
		}
		k := &Knot{Addr: auth.addr, Dir: dir, ConfigPath: confPath, Proc: p, auth: auth, control: ctl}
		auth.reloadZone = k.reloadZone
		if err := p.WaitReady(timeout, auth.waitZones); err != nil {
			_ = p.Stop()
			return nil, err
		}
		return k, nil
	})
	if err != nil {
		t.Fatalf("harness: start knotd: %v", err)
	}
	k.Proc.registerCleanup(t)
	return k
}

// Reload replaces the first zone's file with content (which must carry a new
// SOA serial) and returns once knotd serves that serial.
func (k *Knot) Reload(content string) error {
	return k.auth.reload(k.auth.defaultZone(), content)
}

// ReloadZone is Reload for a named zone.
func (k *Knot) ReloadZone(zone, content string) error {
	return k.auth.reload(zone, content)
}

// Control runs knotc against this instance, e.g. Control("zone-status").
func (k *Knot) Control(args ...string) (string, error) {
	out, err := runTool(10*time.Second, k.Dir, k.control, append([]string{"-c", k.ConfigPath}, args...)...)
	if err != nil {
		return out, fmt.Errorf("knot: %w", err)
	}
	return out, nil
}

func (k *Knot) reloadZone(zone string) error {
	_, err := k.Control("zone-reload", zone)
	return err
}
