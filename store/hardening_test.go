package store

import (
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// TestSnapshotDoesNotTakeTheWriteLock: the SQLite poller reads a snapshot
// every second. With _txlock=immediate on every connection, that read-only
// transaction took the database's write lock, so it waited behind any
// writer (up to the 10 s busy timeout) and writers waited behind it.
func TestSnapshotDoesNotTakeTheWriteLock(t *testing.T) {
	ctx := testCtx(t)
	s := openStore(t, newBackend(t, "sqlite"), Options{})
	mustCreate(t, s, newAccount())
	writer, err := s.db.BeginTx(ctx, nil) // immediate: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback()
	done := make(chan error, 1)
	go func() {
		tx, err := s.snapshotTx(ctx)
		if err != nil {
			done <- err
			return
		}
		defer tx.Rollback()
		var n int
		done <- tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("snapshot read beside a writer: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("snapshot read waited for the write lock")
	}
	// And the read pool refuses writes.
	if _, err := s.read.ExecContext(ctx, `DELETE FROM accounts`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

// umaskMu serialises tests that change the process's umask.
var umaskMu sync.Mutex

// TestDatabaseFilesPrivate: the database holds bcrypt hashes and private
// keys. It was created 0644 (0666 less the usual umask); the database and
// its -wal and -shm files must be 0600 whatever the umask.
func TestDatabaseFilesPrivate(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077} {
		t.Run(fs.FileMode(umask).String(), func(t *testing.T) {
			umaskMu.Lock()
			old := syscall.Umask(umask)
			b := newBackend(t, "sqlite")
			s := openStore(t, b, Options{})
			syscall.Umask(old)
			umaskMu.Unlock()
			mustCreate(t, s, newAccount())
			for _, suffix := range sqliteFiles {
				fi, err := os.Stat(b.dsn + suffix)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s is %04o, want 0600", filepath.Base(b.dsn+suffix), got)
				}
			}
		})
	}
}

// TestWarnWhenDatabaseExposed: an existing database readable by others
// keeps its mode (changing an operator's file is not ours to do) but is
// named in a warning at start.
func TestWarnWhenDatabaseExposed(t *testing.T) {
	b := newBackend(t, "sqlite")
	openStore(t, b, Options{}).Close()
	if err := os.Chmod(b.dsn, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs harness.LockedBuffer
	openStore(t, b, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "database file is accessible to other users") || !strings.Contains(logs.String(), "mode=0644") {
		t.Errorf("no warning about the 0644 database; log:\n%s", logs.String())
	}
	var quiet harness.LockedBuffer
	for _, suffix := range sqliteFiles {
		if err := os.Chmod(b.dsn+suffix, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	openStore(t, b, Options{Logger: slog.New(slog.NewTextHandler(&quiet, nil))})
	if strings.Contains(quiet.String(), "accessible to other users") {
		t.Errorf("warning about a 0600 database:\n%s", quiet.String())
	}
}

// failWrites makes every write to txt_values and the health probe fail, as
// a full disk or a read-only file does; the returned func undoes it.
func failWrites(t *testing.T, s *Store) func() {
	t.Helper()
	ctx := testCtx(t)
	for _, stmt := range []string{
		`CREATE TRIGGER fail_values BEFORE INSERT ON txt_values BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		`CREATE TRIGGER fail_probe BEFORE UPDATE ON health_probe BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		`CREATE TRIGGER fail_probe_insert BEFORE INSERT ON health_probe BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for _, trig := range []string{"fail_values", "fail_probe", "fail_probe_insert"} {
			if _, err := s.db.ExecContext(ctx, `DROP TRIGGER `+trig); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPingReportsFailingWrites: /health said 200 while every /update failed
// (disk full): Ping now fails after a failed write, and its probe finds a
// store that cannot write even when nothing else tried.
func TestPingReportsFailingWrites(t *testing.T) {
	ctx := testCtx(t)
	s := openStore(t, newBackend(t, "sqlite"), Options{})
	a := mustCreate(t, s, newAccount())
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("healthy store: %v", err)
	}
	restore := failWrites(t, s)
	if err := s.AddValue(ctx, a.Subdomain, "value"); err == nil {
		t.Fatal("AddValue succeeded through the failing trigger")
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("Ping after a failed write = %v, want the write's error", err)
	}
	restore()
	// The failure stands until a write or a probe (at most one a second)
	// succeeds.
	waitUntil(t, "Ping healthy again after writes work", func() bool { return s.Ping(ctx) == nil })

	// Without any write, the probe finds it (the last success is older than
	// probeAfter: pretend so rather than wait).
	restore = failWrites(t, s)
	defer restore()
	s.writes.mu.Lock()
	s.writes.lastOK = time.Now().Add(-probeAfter)
	s.writes.lastProbe = time.Time{}
	s.writes.mu.Unlock()
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "write probe") {
		t.Fatalf("Ping with failing writes and no traffic = %v, want a write-probe failure", err)
	}
}

// TestRequestErrorsAreNotStoreFailures: an unknown subdomain or a taken
// name is the request's fault; health must not turn 503 because of them.
func TestRequestErrorsAreNotStoreFailures(t *testing.T) {
	ctx := testCtx(t)
	s := openStore(t, newBackend(t, "sqlite"), Options{})
	a := mustCreate(t, s, newAccount())
	if err := s.AddValue(ctx, "unknown", "v"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, a); !errors.Is(err, ErrConflict) {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after request errors: %v", err)
	}
}

// TestCompactChanges: the change feed keeps one row per subdomain ever
// written, deleted ones included; compaction removes old tombstones only,
// and a follower that had not applied them finds out.
func TestCompactChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		clock := newTestClock()
		s := openStore(t, b, Options{Now: clock.Now})
		live := mustCreate(t, s, newAccount())
		for range 3 {
			a := mustCreate(t, s, newAccount())
			if err := s.DeleteAccount(ctx, a.Username); err != nil {
				t.Fatal(err)
			}
		}
		countChanges := func() int {
			var n int
			if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM changes`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		waitUntil(t, "the follower applied every change", func() bool {
			var max int64
			s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&max)
			// On PostgreSQL, the heartbeat has recorded it too.
			var least sql.NullInt64
			s.db.QueryRowContext(ctx, `SELECT MIN(applied_seq) FROM instances`).Scan(&least)
			return s.follow.appliedSeq() >= max && (!least.Valid || least.Int64 >= max)
		})
		if n, err := s.CompactChanges(ctx); err != nil || n != 0 {
			t.Fatalf("compaction of fresh tombstones removed %d, %v; want 0", n, err)
		}
		clock.Advance(changeRetention + time.Minute)
		// The newest row (the last deletion) always stays.
		if n, err := s.CompactChanges(ctx); err != nil || n != 2 {
			t.Fatalf("CompactChanges removed %d, %v; want the 2 older tombstones", n, err)
		}
		if n := countChanges(); n != 2 {
			t.Errorf("%d change rows left, want the live account's and the newest tombstone", n)
		}
		st := loadAll(t, s)
		if _, ok := st[live.Subdomain]; !ok || len(st) != 1 {
			t.Errorf("load after compaction: %v", st)
		}
		through, err := s.compactedThrough(ctx, s.db)
		if err != nil || through == 0 {
			t.Fatalf("compaction mark %d, %v", through, err)
		}
		// A follower that had applied less than the mark may have missed
		// a deletion: its catch-up fails (and so its health) rather than
		// serve the name forever.
		f := s.follow
		f.mu.Lock()
		f.applied = through - 1
		f.mu.Unlock()
		// (No write here: its notification would advance the follower.)
		if err := f.catchUp(ctx); err == nil || !strings.Contains(err.Error(), "restart") {
			t.Errorf("catch-up from below the compaction mark = %v, want an error asking for a restart", err)
		}
	})
}

// TestLoadValuesWithLineBreaks: SQLite's load joins an account's values
// with a line break; a TXT value set over RFC 2136 may contain one, and
// must still load as it was stored.
func TestLoadValuesWithLineBreaks(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := openStore(t, b, Options{})
		a := mustCreate(t, s, newAccount())
		plain := mustCreate(t, s, newAccount())
		for _, v := range []string{"first\nline", "second", "\n"} {
			if err := s.AddValue(ctx, a.Subdomain, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddValue(ctx, plain.Subdomain, "only"); err != nil {
			t.Fatal(err)
		}
		got := loadAll(t, s)
		if vs := got[a.Subdomain].Values; !slices.Equal(vs, []string{"first\nline", "second", "\n"}) {
			t.Errorf("loaded %q", vs)
		}
		if vs := got[plain.Subdomain].Values; !slices.Equal(vs, []string{"only"}) {
			t.Errorf("loaded %q for the plain account", vs)
		}
	})
}
