// Command seed fills a delegated SQLite store with N accounts, one TXT value
// each, much faster than the API could (no bcrypt, one transaction), and
// writes the same names as a dnsperf query file and a zone file for Knot,
// so both servers answer the same data.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/delegated/delegated/store"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1000, "number of accounts")
	dbPath := fs.String("db", "", "SQLite file to create (must not exist)")
	zone := fs.String("zone", "auth.example.org.", "zone name")
	nsname := fs.String("nsname", "auth.example.org.", "SOA MNAME and NS")
	nsadmin := fs.String("nsadmin", "hostmaster.auth.example.org.", "SOA RNAME")
	queries := fs.String("queries", "", "dnsperf query file to write")
	zoneFile := fs.String("zonefile", "", "zone file for Knot to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dbPath == "" || *queries == "" || *zoneFile == "" {
		return errors.New("-db, -queries and -zonefile are required")
	}
	if _, err := os.Stat(*dbPath); err == nil {
		return fmt.Errorf("%s exists; seed writes a fresh store", *dbPath)
	}
	ctx := context.Background()
	// store.Open creates the schema exactly as delegated will expect it.
	st, err := store.Open(ctx, "sqlite3", *dbPath, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+*dbPath+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		return fmt.Errorf("open %s: %w", *dbPath, err)
	}
	defer db.Close()

	qf, err := os.Create(*queries)
	if err != nil {
		return err
	}
	defer qf.Close()
	zf, err := os.Create(*zoneFile)
	if err != nil {
		return err
	}
	defer zf.Close()
	qw, zw := bufio.NewWriter(qf), bufio.NewWriter(zf)
	fmt.Fprintf(zw, "$ORIGIN %s\n@ 300 IN SOA %s %s 1 3600 600 1209600 60\n@ 3600 IN NS %s\n@ 3600 IN A 127.0.0.1\n", *zone, *nsname, *nsadmin, *nsname)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	acc, err := tx.PrepareContext(ctx, `INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at) VALUES (?, ?, ?, '[]', ?)`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	val, err := tx.PrepareContext(ctx, `INSERT INTO txt_values (subdomain, value, created_at, expires_at) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	now := time.Now()
	// Values must outlive the benchmark; a year is plenty.
	expires := now.Add(365 * 24 * time.Hour).UnixNano()
	for i := range *n {
		sub := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i, i>>32&0xffff, i&0xfff, i>>12&0xfff, uint64(i)*2654435761&0xffffffffffff)
		sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		value := base64.RawURLEncoding.EncodeToString(sum[:])
		// The key hash is not a bcrypt hash: these accounts are for DNS only.
		if _, err := acc.ExecContext(ctx, "bench-"+sub, "!", sub, now.UnixNano()); err != nil {
			return fmt.Errorf("account %d: %w", i, err)
		}
		if _, err := val.ExecContext(ctx, sub, value, now.UnixNano(), expires); err != nil {
			return fmt.Errorf("value %d: %w", i, err)
		}
		fmt.Fprintf(qw, "%s.%s TXT\n", sub, *zone)
		fmt.Fprintf(zw, "%s 1 IN TXT %q\n", sub, value)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if err := qw.Flush(); err != nil {
		return err
	}
	return zw.Flush()
}
