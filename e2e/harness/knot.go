package harness

import (
	"testing"
	"text/template"
)

// KnotOptions configures Knot DNS.
type KnotOptions = AuthServerOptions

// Knot is a running knotd, a second real authority for DNS-reference tests.
type Knot = AuthServer

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
{{- range .TopLevel}}
{{.}}
{{- end}}
zone:
{{- range .Zones}}
  - domain: "{{.Name}}"
    file: "{{.File}}"
{{- range .Extra}}
    {{.}}
{{- end}}
{{- end}}
`))

func knotKind() authServerKind {
	return authServerKind{
		name: "knot", hint: HintKnot,
		daemon: "knotd", checker: "knotc", control: "knotc",
		confName: "knot.conf", sockName: "knot.sock", conf: knotConf,
		checkArgs:  func(conf string) []string { return []string{"-c", conf, "conf-check"} },
		daemonArgs: func(conf string) []string { return []string{"-c", conf} },
		reloadZone: func(s *AuthServer, zone string) error {
			_, err := s.Control("zone-reload", zone)
			return err
		},
	}
}

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
	return startAuthServer(t, knotKind(), opts)
}
