package issuer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func pathsFor(deployDir, name string) Paths {
	dir := filepath.Join(deployDir, "live", name)
	return Paths{
		Dir:       dir,
		Cert:      filepath.Join(dir, "cert.pem"),
		Chain:     filepath.Join(dir, "chain.pem"),
		FullChain: filepath.Join(dir, "fullchain.pem"),
		PrivKey:   filepath.Join(dir, "privkey.pem"),
	}
}

// deploy writes the four files, each atomically (temp file, fsync,
// rename), so a server reading them never sees a half-written file. The
// private key is 0600 from the moment it exists.
func deploy(p Paths, certPEM, chainPEM, keyPEM string) error {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	files := []struct {
		path, data string
		perm       os.FileMode
	}{
		{p.PrivKey, keyPEM, 0o600},
		{p.Cert, certPEM, 0o644},
		{p.Chain, chainPEM, 0o644},
		{p.FullChain, certPEM + chainPEM, 0o644},
	}
	for _, f := range files {
		if err := writeAtomic(f.path, []byte(f.data), f.perm); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// removeDeployed deletes a certificate's deployed files.
func removeDeployed(p Paths) error {
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("remove deployed files: %w", err)
	}
	return nil
}

// hookTimeout bounds the deploy hook.
const hookTimeout = 5 * time.Minute

// hookRun is one run of the deploy hook: after an issuance (Renewed tells
// whether it replaced a certificate) or, with Failure set, once attempts
// are exhausted so the operator's alerting learns of it.
type hookRun struct {
	Name    string
	Domains []string
	Paths   Paths
	Renewed bool
	Failure error
}

// env is the hook's environment: the certificate's name, domains and
// paths (certbot's RENEWED_LINEAGE and RENEWED_DOMAINS too, so existing
// certbot hooks work), or DELEGATED_FAILED=1 and the error.
func (r hookRun) env() []string {
	env := append(os.Environ(),
		"DELEGATED_CERT_NAME="+r.Name,
		"DELEGATED_DOMAINS="+strings.Join(r.Domains, " "),
		"DELEGATED_CERT_DIR="+r.Paths.Dir,
	)
	if r.Failure != nil {
		return append(env, "DELEGATED_FAILED=1", "DELEGATED_ERROR="+r.Failure.Error())
	}
	ren := "0"
	if r.Renewed {
		ren = "1"
	}
	return append(env,
		"DELEGATED_CERT_PATH="+r.Paths.Cert,
		"DELEGATED_CHAIN_PATH="+r.Paths.Chain,
		"DELEGATED_FULLCHAIN_PATH="+r.Paths.FullChain,
		"DELEGATED_KEY_PATH="+r.Paths.PrivKey,
		"DELEGATED_RENEWED="+ren,
		"RENEWED_LINEAGE="+r.Paths.Dir,
		"RENEWED_DOMAINS="+strings.Join(r.Domains, " "),
	)
}

// runHook runs hook with /bin/sh -c, bounded by hookTimeout and ctx (a
// lost lease stops it). An error carries the tail of its output.
func runHook(ctx context.Context, hook string, r hookRun) error {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
	cmd.Env = r.env()
	// A child of the hook that outlives it (a daemon it started) must not
	// hold the attempt: stop reading its output soon after.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tail := strings.TrimSpace(out.String())
		if len(tail) > 500 {
			tail = "…" + tail[len(tail)-500:]
		}
		what := "deploy hook"
		if r.Failure != nil {
			what = "deploy hook (failure)"
		}
		return fmt.Errorf("%s %q: %w: %s", what, hook, err, tail)
	}
	return nil
}
