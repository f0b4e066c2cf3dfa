package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/issuer"
)

// startInputs is everything serve reads from outside the config file
// (secrets, certificates, the system's resolvers) before it touches
// anything: a missing or bad one is a configuration error (exit status 2,
// naming the key) and no database is created or migrated.
type startInputs struct {
	// registrationToken is the token of [api] registration = "token".
	registrationToken string
	// issuer is nil without an [issuer] section.
	issuer *issuerInputs
}

// issuerInputs are the issuer's files and secrets, read once at start.
type issuerInputs struct {
	cas           []issuer.CA
	operatorToken string
	resolvers     []string
}

// preflight reads and checks startInputs.
func preflight(cfg *config.Config) (startInputs, error) {
	var in startInputs
	tok, err := registrationToken(cfg)
	if err != nil {
		return in, err
	}
	if cfg.API.Registration == config.RegistrationToken && tok == "" {
		return in, configError(cfg, "api.registration_token_file", "api.registration = %q needs a token: set api.registration_token_file or the environment variable %s", config.RegistrationToken, registrationTokenEnv)
	}
	in.registrationToken = tok
	if cfg.Store.Driver == "sqlite3" {
		if err := checkWritable(cfg, "store.dsn", cfg.Store.DSN); err != nil {
			return in, err
		}
	}
	if ic := cfg.Issuer; ic != nil {
		if err := checkWritable(cfg, "issuer.deploy_dir", filepath.Join(ic.DeployDir, "live")); err != nil {
			return in, err
		}
		if err := checkWritable(cfg, "issuer.operator_socket", ic.OperatorSocket); err != nil {
			return in, err
		}
	}
	if cfg.API.TLS == "files" {
		if err := checkKeyPair(cfg); err != nil {
			return in, err
		}
	}
	if in.issuer, err = readIssuerInputs(cfg); err != nil {
		return in, err
	}
	return in, nil
}

// checkWritable checks that this process may create or write path: the
// file itself when it exists, else the nearest folder above it that
// exists (the daemon creates the ones below). A read-only file system
// (systemd's ProtectSystem=strict, a container's read-only root) says so
// here, naming the key, instead of as SQLite's "unable to open database
// file" after start.
func checkWritable(cfg *config.Config, key, path string) error {
	p := path
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if p != path && !fi.IsDir() {
				return configError(cfg, key, "%s: %s is not a folder", path, p)
			}
			if err := unix.Access(p, unix.W_OK); err != nil {
				return configError(cfg, key, "%s: %s is not writable by this process (uid %d): %v; under systemd only /var/lib/delegated is, in the container only the volume", path, p, os.Geteuid(), err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return configError(cfg, key, "%s: %v", path, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// configError is a config.Error for a key whose outside input is wrong:
// exit status 2.
func configError(cfg *config.Config, key, format string, args ...any) error {
	return &exitError{code: 2, err: &config.Error{File: cfg.Path, Key: key, Msg: fmt.Sprintf(format, args...)}}
}

// registrationToken reads the token from the file, else the environment.
func registrationToken(cfg *config.Config) (string, error) {
	a := cfg.API
	if a.RegistrationTokenFile == "" {
		return strings.TrimSpace(os.Getenv(registrationTokenEnv)), nil
	}
	b, err := os.ReadFile(a.RegistrationTokenFile)
	if err != nil {
		return "", configError(cfg, "api.registration_token_file", "%v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", configError(cfg, "api.registration_token_file", "%s is empty; write the token into it", a.RegistrationTokenFile)
	}
	return tok, nil
}

// checkKeyPair loads the files of [api] tls = "files" once, so that a
// missing or mismatched certificate stops the start, not the first TLS
// handshake. The API loads them again (and on every reload).
func checkKeyPair(cfg *config.Config) error {
	a := cfg.API
	certPEM, err := os.ReadFile(a.CertFile)
	if err != nil {
		return configError(cfg, "api.cert_file", "%v; expected a PEM certificate file", err)
	}
	keyPEM, err := os.ReadFile(a.KeyFile)
	if err != nil {
		return configError(cfg, "api.key_file", "%v; expected a PEM private key file", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return configError(cfg, "api.cert_file", "%s and api.key_file %s are not a certificate and its key: %v", a.CertFile, a.KeyFile, err)
	}
	return nil
}

// readIssuerInputs reads the CA roots, the EAB key, the operator token and
// the resolvers of [issuer]; nil without one.
func readIssuerInputs(cfg *config.Config) (*issuerInputs, error) {
	ic := cfg.Issuer
	if ic == nil {
		return nil, nil
	}
	in := &issuerInputs{resolvers: ic.Resolvers}
	var err error
	if in.cas, err = issuerCAs(cfg, ic); err != nil {
		return nil, err
	}
	if in.operatorToken, err = secret(ic.OperatorTokenFile, envOperatorToken, "issuer.operator_token_file"); err != nil {
		return nil, err
	}
	if len(in.resolvers) == 0 {
		if in.resolvers, err = issuer.SystemResolvers("/etc/resolv.conf"); err != nil {
			return nil, configError(cfg, "issuer.resolvers", "none configured and %v", err)
		}
	}
	return in, nil
}

// secret reads a secret from file (trailing newline dropped) or env.
func secret(file, env, key string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", &exitError{code: 2, err: fmt.Errorf("%s: %w", key, err)}
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(os.Getenv(env)), nil
}

// issuerCAs turns the configured CAs into the issuer's, reading each CA's
// roots and EAB HMAC key (file, or its environment variable).
func issuerCAs(cfg *config.Config, ic *config.Issuer) ([]issuer.CA, error) {
	var out []issuer.CA
	for k, ca := range ic.CAs {
		prefix := fmt.Sprintf("issuer.ca[%d]", k)
		if ic.Directory != "" {
			// The single-CA form: its keys are [issuer]'s own.
			prefix = "issuer"
		}
		var roots *x509.CertPool
		if len(ca.CARoots) > 0 {
			roots = x509.NewCertPool()
			for i, p := range ca.CARoots {
				key := fmt.Sprintf("%s.ca_roots[%d]", prefix, i)
				b, err := os.ReadFile(p)
				if err != nil {
					return nil, configError(cfg, key, "%v", err)
				}
				if !roots.AppendCertsFromPEM(b) {
					return nil, configError(cfg, key, "%s holds no PEM certificate", p)
				}
			}
		}
		hmac, err := secret(ca.EABHMACFile, ca.EABHMACEnv(), prefix+".eab_hmac_file")
		if err != nil {
			return nil, err
		}
		if ca.EABKID != "" && hmac == "" {
			return nil, configError(cfg, prefix+".eab_kid", "set but no HMAC key: set %s.eab_hmac_file or %s", prefix, ca.EABHMACEnv())
		}
		out = append(out, issuer.CA{
			Name: ca.Name, Directory: ca.Directory, Email: ca.Email, CARoots: roots, EABKID: ca.EABKID, EABHMAC: hmac,
			PreferredChain: ca.PreferredChain, Profile: ca.Profile, KeyType: ca.KeyType, CAAIdentities: ca.CAAIdentities,
		})
	}
	return out, nil
}
