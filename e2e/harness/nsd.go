package harness

import (
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"
)

// NSDOptions configures NSD.
type NSDOptions = AuthServerOptions

// NSD is a running NSD, a real authority for the customer zone (it sets the
// AA bit and answers NXDOMAIN, unlike challtestsrv).
type NSD = AuthServer

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

func nsdKind() authServerKind {
	return authServerKind{
		name: "nsd", hint: HintNSD,
		daemon: "nsd", checker: "nsd-checkconf", control: "nsd-control",
		confName: "nsd.conf", sockName: "nsd.ctl", conf: nsdConf,
		checkArgs:  func(conf string) []string { return []string{conf} },
		daemonArgs: func(conf string) []string { return []string{"-d", "-c", conf} },
		reloadZone: reloadNSDZone,
	}
}

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
	return startAuthServer(t, nsdKind(), opts)
}

// reloadZone asks NSD to re-read zone and waits until the server processes
// that served the old data have exited. NSD answers from forked children and
// a reload replaces them; while an old one lives, the kernel may still hand
// it a query, so the old serial can reappear after the new one was seen.
func reloadNSDZone(n *AuthServer, zone string) error {
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
