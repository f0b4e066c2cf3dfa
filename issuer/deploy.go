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

// Paths are the deployed files of one certificate, certbot's layout.
type Paths struct {
	Dir       string `json:"dir"`
	Cert      string `json:"cert"`
	Chain     string `json:"chain"`
	FullChain string `json:"fullchain"`
	PrivKey   string `json:"privkey"`
}

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

// runHook runs the deploy hook with /bin/sh -c. Its environment carries the
// certificate's name, domains and paths (certbot's RENEWED_LINEAGE and
// RENEWED_DOMAINS too, so existing certbot hooks work). An error carries the
// tail of its output.
func runHook(ctx context.Context, hook, name string, domains []string, p Paths, renewed bool) error {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
	ren := "0"
	if renewed {
		ren = "1"
	}
	cmd.Env = append(os.Environ(),
		"DELEGATED_CERT_NAME="+name,
		"DELEGATED_DOMAINS="+strings.Join(domains, " "),
		"DELEGATED_CERT_DIR="+p.Dir,
		"DELEGATED_CERT_PATH="+p.Cert,
		"DELEGATED_CHAIN_PATH="+p.Chain,
		"DELEGATED_FULLCHAIN_PATH="+p.FullChain,
		"DELEGATED_KEY_PATH="+p.PrivKey,
		"DELEGATED_RENEWED="+ren,
		"RENEWED_LINEAGE="+p.Dir,
		"RENEWED_DOMAINS="+strings.Join(domains, " "),
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tail := strings.TrimSpace(out.String())
		if len(tail) > 500 {
			tail = "…" + tail[len(tail)-500:]
		}
		return fmt.Errorf("deploy hook %q: %w: %s", hook, err, tail)
	}
	return nil
}

// runFailureHook runs the deploy hook once attempts are exhausted, with
// DELEGATED_FAILED=1 and the error, so the operator's alerting learns of it.
func runFailureHook(ctx context.Context, hook, name string, domains []string, p Paths, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
	cmd.Env = append(os.Environ(),
		"DELEGATED_CERT_NAME="+name,
		"DELEGATED_DOMAINS="+strings.Join(domains, " "),
		"DELEGATED_CERT_DIR="+p.Dir,
		"DELEGATED_FAILED=1",
		"DELEGATED_ERROR="+cause.Error(),
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("deploy hook %q (failure): %w: %s", hook, err, strings.TrimSpace(string(out)))
	}
	return nil
}
