package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/delegated/delegated/config"
)

// No Docker engine runs here: these tests guard by parsing what an engine
// would read.

// TestDockerfile: the image builds this command with cgo, ships that binary
// as the entrypoint, runs as a non-root user with no file capability (so
// --cap-drop ALL still starts it), checks its health without curl, and its
// baked-in config is valid.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=1 go build .*-o (\S+) \./cmd/delegated$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no cgo-enabled `go build -o BIN ./cmd/delegated` step")
	}
	copyStep := regexp.MustCompile(`(?m)^COPY --from=build (\S+) (\S+)$`).FindStringSubmatch(df)
	if copyStep == nil || copyStep[1] != build[1] {
		t.Fatalf("runtime stage does not copy the built binary %s: %v", build[1], copyStep)
	}
	bin := copyStep[2]
	for _, want := range []string{
		`ENTRYPOINT ["` + bin + `"]`,
		"EXPOSE 53/udp 53/tcp 8053",
		"USER delegated",
		"COPY deploy/docker/config.toml /etc/delegated/config.toml",
		`CMD ["serve", "--config", "/etc/delegated/config.toml"]`,
		`CMD ["` + bin + `", "health", "--config", "/etc/delegated/config.toml"]`,
		`VOLUME ["/var/lib/delegated"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, banned := range []string{"setcap", "libcap", "curl", "wget"} {
		if regexp.MustCompile(`(?m)^[^#]*` + banned).MatchString(df) {
			t.Errorf("Dockerfile uses %s", banned)
		}
	}
	if !regexp.MustCompile(`(?m)^HEALTHCHECK .*\\\n\s+CMD \[`).MatchString(df) {
		t.Error("no HEALTHCHECK ... CMD [...] instruction")
	}
	stages := regexp.MustCompile(`(?m)^FROM .*$`).FindAllString(df, -1)
	if len(stages) != 2 || !strings.HasPrefix(stages[0], "FROM golang:") || !strings.HasSuffix(stages[0], " AS build") {
		t.Errorf("expected two stages, a golang build stage and a slim runtime stage: %q", stages)
	}
	if !slices.Contains(commandNames(), "health") {
		t.Error("the HEALTHCHECK's verb `health` does not exist")
	}
	checkContainerConfig(t, "../../deploy/docker/config.toml")
}

func commandNames() []string {
	var names []string
	for _, c := range commands(nil) {
		names = append(names, c.Name)
	}
	return names
}

// checkContainerConfig: the container's config listens on every address
// (the published ports reach it) and writes only into the volume, with the
// issuer section the file offers uncommented too.
func checkContainerConfig(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, variant := range []string{"as shipped", "issuer uncommented"} {
		text := string(raw)
		if variant == "issuer uncommented" {
			text = uncommentIssuer(t, text)
		}
		cfg, err := config.Parse([]byte(text), "/etc/delegated/config.toml")
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		for _, l := range append(slices.Clone(cfg.DNS.Listen), cfg.API.Listen...) {
			if !strings.HasPrefix(l, "0.0.0.0:") && !strings.HasPrefix(l, "[::]:") {
				t.Errorf("%s: listens on %s, not on all addresses", variant, l)
			}
		}
		checkStatePaths(t, variant, cfg, "/var/lib/delegated")
	}
}

// uncommentIssuer turns the commented-out [issuer] block of a shipped
// config into a live one.
func uncommentIssuer(t *testing.T, text string) string {
	t.Helper()
	i := strings.Index(text, "#[issuer]")
	if i < 0 {
		t.Fatal("no commented-out [issuer] section")
	}
	return text[:i] + strings.ReplaceAll(text[i:], "\n#", "\n")[1:]
}

// checkStatePaths: every file the daemon writes is under state.
func checkStatePaths(t *testing.T, variant string, cfg *config.Config, state string) {
	t.Helper()
	under := func(key, p string) {
		if !strings.HasPrefix(p, state+"/") {
			t.Errorf("%s: %s = %s is not under %s, the only writable folder", variant, key, p, state)
		}
	}
	under("store.dsn", cfg.Store.DSN)
	under("dns.tsig_kek_file", cfg.DNS.TSIGKEKFile)
	if cfg.Issuer != nil {
		under("issuer.deploy_dir", cfg.Issuer.DeployDir)
		under("issuer.operator_socket", cfg.Issuer.OperatorSocket)
	} else if variant != "as shipped" {
		t.Errorf("%s: no [issuer]", variant)
	}
}

// TestDockerignore: the build context leaves out history, local databases,
// keys and certificates, but keeps everything the Dockerfile copies.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Errorf("exception %q: keep the file simple to audit", l)
		}
		patterns = append(patterns, l)
	}
	excluded := func(path string) bool {
		for _, p := range patterns {
			if dockerignoreMatch(p, path) {
				return true
			}
		}
		return false
	}
	for _, p := range []string{".git/config", "delegated.db", "delegated.db-wal", "state/x.db-shm", "certs/live/a/privkey.pem",
		"deploy/certs/x.pem", "bench/out/run.txt", "delegated", "config.toml", "registration.token", "operator.key", "delegated.sock"} {
		if !excluded(p) {
			t.Errorf("%s goes into the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/delegated/main.go", "deploy/docker/config.toml", "store/store.go", "issuer/names.go"} {
		if excluded(p) {
			t.Errorf("%s, needed by the build, is excluded", p)
		}
	}
}

// dockerignoreMatch applies one .dockerignore pattern the way Docker does:
// paths relative to the context root, '*' within one segment, '**' across
// any number of them, and a matching folder excludes all below it.
func dockerignoreMatch(pattern, path string) bool {
	pattern = strings.TrimPrefix(filepath.Clean(pattern), "/")
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case strings.HasPrefix(pattern[i:], "**/"):
			re.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(pattern[i:], "**"):
			re.WriteString(".*")
			i++
		case c == '*':
			re.WriteString("[^/]*")
		case c == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("(/.*)?$")
	return regexp.MustCompile(re.String()).MatchString(path)
}

// TestCompose: the compose file builds this repository, publishes DNS over
// UDP and TCP and the API, keeps state in a named volume at the image's
// volume path, mounts the config read-only, and drops every capability.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile("../../deploy/docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Build struct {
				Context string `yaml:"context"`
			} `yaml:"build"`
			Ports       []string `yaml:"ports"`
			Volumes     []string `yaml:"volumes"`
			CapDrop     []string `yaml:"cap_drop"`
			ReadOnly    bool     `yaml:"read_only"`
			Healthcheck any      `yaml:"healthcheck"`
			Image       string   `yaml:"image"`
			Restart     string   `yaml:"restart"`
			SecurityOpt []string `yaml:"security_opt"`
			Tmpfs       []string `yaml:"tmpfs"`
			StopGrace   string   `yaml:"stop_grace_period"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		// KnownFields: a key this test does not know is refused, so
		// extend the struct when the file grows.
		t.Fatalf("compose.yaml: %v", err)
	}
	s, ok := f.Services["delegated"]
	if !ok {
		t.Fatalf("no service \"delegated\": %v", f.Services)
	}
	if ctx := filepath.Join("../../deploy/docker", s.Build.Context); filepath.Clean(ctx) != filepath.Clean("../..") {
		t.Errorf("build context %s is not the repository root", s.Build.Context)
	}
	for _, p := range []string{"53:53/udp", "53:53/tcp", "8053:8053"} {
		if !slices.Contains(s.Ports, p) {
			t.Errorf("port %s not published: %v", p, s.Ports)
		}
	}
	if !slices.Contains(s.Volumes, "delegated:/var/lib/delegated") || !hasKey(f.Volumes, "delegated") {
		t.Errorf("state is not in the named volume at /var/lib/delegated: %v %v", s.Volumes, f.Volumes)
	}
	if !slices.Contains(s.Volumes, "./config.toml:/etc/delegated/config.toml:ro") {
		t.Errorf("config not mounted read-only over the image's: %v", s.Volumes)
	}
	if !slices.Equal(s.CapDrop, []string{"ALL"}) || !s.ReadOnly || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("cap_drop %v, read_only %t, security_opt %v; want ALL, true, no-new-privileges", s.CapDrop, s.ReadOnly, s.SecurityOpt)
	}
	if s.Healthcheck != nil {
		t.Error("healthcheck repeated in compose; the image's HEALTHCHECK is the one")
	}
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }
