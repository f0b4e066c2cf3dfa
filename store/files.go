package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// sqliteFiles are the suffixes of an SQLite database's files in WAL mode.
var sqliteFiles = []string{"", "-wal", "-shm"}

// createPrivate creates the database file with mode 0600 if it does not
// exist. SQLite would create it with 0644 less the umask; it then gives the
// -wal and -shm files the database file's own mode (fchmod, so the umask
// does not widen or narrow it), so the three end up 0600. An existing file
// keeps its mode: warnExposed tells the operator.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("create %s: %w", path, err)
	}
	// OpenFile applies the umask, which only takes bits away; Chmod makes
	// the mode exact whatever the umask.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// warnExposed warns about each of the database's files that users other
// than its owner can read or write: it holds bcrypt hashes of API keys and
// the issuer's private keys, and anyone who can write its -shm file can
// crash the process (see README, "SQLite files").
func (sqliteDialect) warnExposed(log *slog.Logger, path string) {
	for _, suffix := range sqliteFiles {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			continue
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			log.Warn("database file is accessible to other users; it holds key hashes and private keys: chmod 600 it",
				"file", path+suffix, "mode", fmt.Sprintf("%04o", mode))
		}
	}
}
