package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3" // acme-dns's database is SQLite
	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/httpapi"
	"github.com/delegated/delegated/store"
)

func importACMEDNSCommand() command {
	c := command{
		Name:  "import-acme-dns",
		Usage: "--db FILE [--config FILE] [--values=false]",
		Short: "Import accounts (and live values) from an acme-dns SQLite database",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file`")
		db := fs.String("db", "", "acme-dns SQLite database `file` (acme-dns's [database] connection)")
		values := fs.Bool("values", true, "also import TXT values updated within [values] lifetime")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("unexpected argument %q", fs.Arg(0))
		}
		if *db == "" {
			return usageError("--db is required")
		}
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		return importACMEDNS(ctx, cfg, *db, *values, time.Now(), stdout, stderr)
	}
	return c
}

// acmeDNSAccount is one row of acme-dns's `records` table.
type acmeDNSAccount struct {
	username, subdomain string
	hash                []byte
	allowFrom           sql.NullString
}

// importStats is what an import did.
type importStats struct {
	accounts, present, values int
	skipped                   []string
}

// importACMEDNS copies acme-dns's accounts (records: Username, Password as
// a bcrypt hash, Subdomain, AllowFrom as a JSON array) keeping usernames,
// hashes and subdomains, so customers' CNAMEs and their clients' stored
// credentials keep working. Live values (txt: Subdomain, Value, LastUpdate
// in Unix seconds) come along when withValues is set. Running it twice is
// harmless: accounts already present with the same credentials are skipped.
func importACMEDNS(ctx context.Context, cfg *config.Config, dbPath string, withValues bool, now time.Time, stdout, stderr io.Writer) error {
	src, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: dbPath}).EscapedPath()+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open acme-dns database %s: %w", dbPath, err)
	}
	defer src.Close()
	accounts, err := readACMEDNSAccounts(ctx, src)
	if err != nil {
		return fmt.Errorf("acme-dns database %s: %w", dbPath, err)
	}
	st, err := openStore(ctx, cfg, stderr, false)
	if err != nil {
		return err
	}
	defer st.Close()

	var stats importStats
	imported := map[string]bool{}
	for _, a := range accounts {
		acct, reason := convertACMEDNSAccount(a)
		if reason != "" {
			stats.skipped = append(stats.skipped, fmt.Sprintf("%s: %s", a.username, reason))
			continue
		}
		err := st.CreateAccount(ctx, acct)
		if errors.Is(err, store.ErrConflict) {
			have, gerr := st.AccountByUsername(ctx, acct.Username)
			if gerr == nil && have.KeyHash == acct.KeyHash && have.Subdomain == acct.Subdomain {
				stats.present++
				imported[acct.Subdomain] = true
				continue
			}
			stats.skipped = append(stats.skipped, fmt.Sprintf("%s: username or subdomain already used by another account", acct.Username))
			continue
		}
		if err != nil {
			return fmt.Errorf("import account %s: %w", acct.Username, err)
		}
		stats.accounts++
		imported[acct.Subdomain] = true
	}
	if withValues {
		n, err := importACMEDNSValues(ctx, src, st, imported, now.Add(-cfg.Values.Lifetime.Duration))
		if err != nil {
			return fmt.Errorf("acme-dns database %s: %w", dbPath, err)
		}
		stats.values = n
	}
	for _, s := range stats.skipped {
		fmt.Fprintf(stderr, "skipped %s\n", s)
	}
	fmt.Fprintf(stdout, "imported %d accounts (%d already present), %d live values; skipped %d\n",
		stats.accounts, stats.present, stats.values, len(stats.skipped))
	if len(stats.skipped) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d accounts not imported", len(stats.skipped))}
	}
	return nil
}

func readACMEDNSAccounts(ctx context.Context, db *sql.DB) ([]acmeDNSAccount, error) {
	rows, err := db.QueryContext(ctx, `SELECT Username, Password, Subdomain, AllowFrom FROM records`)
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	defer rows.Close()
	var out []acmeDNSAccount
	for rows.Next() {
		var a acmeDNSAccount
		// acme-dns writes the hash as []byte, so SQLite holds a BLOB in a
		// TEXT column; scanning into []byte reads either.
		if err := rows.Scan(&a.username, &a.hash, &a.subdomain, &a.allowFrom); err != nil {
			return nil, fmt.Errorf("read records: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	return out, nil
}

// convertACMEDNSAccount validates a row; reason says why it cannot be used.
func convertACMEDNSAccount(a acmeDNSAccount) (store.Account, string) {
	u, err := uuid.Parse(strings.TrimSpace(a.username))
	if err != nil {
		return store.Account{}, "username is not a UUID"
	}
	if _, err := bcrypt.Cost(a.hash); err != nil {
		return store.Account{}, "password is not a bcrypt hash"
	}
	sub := strings.ToLower(strings.TrimSpace(a.subdomain))
	if _, ok := dns.IsDomainName(sub); !ok || sub == "" || strings.ContainsAny(sub, ". ") || len(sub) > 63 {
		return store.Account{}, fmt.Sprintf("subdomain %q is not a DNS label", a.subdomain)
	}
	var cidrs []string
	if a.allowFrom.Valid && strings.TrimSpace(a.allowFrom.String) != "" {
		if err := json.Unmarshal([]byte(a.allowFrom.String), &cidrs); err != nil {
			return store.Account{}, "AllowFrom is not a JSON array of strings"
		}
	}
	prefixes, err := httpapi.ParseAllowFrom(cidrs)
	if err != nil {
		return store.Account{}, fmt.Sprintf("AllowFrom %q holds an invalid CIDR", a.allowFrom.String)
	}
	return store.Account{Username: u.String(), KeyHash: string(a.hash), Subdomain: sub, AllowFrom: prefixes}, ""
}

// importACMEDNSValues adds the non-empty values of imported subdomains
// updated after since, oldest first, so the store's rotation keeps the
// newest ones. acme-dns never expires values; ours then live for the
// configured lifetime from the import.
func importACMEDNSValues(ctx context.Context, db *sql.DB, st *store.Store, subdomains map[string]bool, since time.Time) (int, error) {
	rows, err := db.QueryContext(ctx, `SELECT Subdomain, Value FROM txt WHERE Value != '' AND LastUpdate > ? ORDER BY LastUpdate, rowid`, since.Unix())
	if err != nil {
		return 0, fmt.Errorf("read txt: %w", err)
	}
	type value struct{ sub, txt string }
	var vs []value
	for rows.Next() {
		var v value
		if err := rows.Scan(&v.sub, &v.txt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read txt: %w", err)
		}
		v.sub = strings.ToLower(v.sub)
		if subdomains[v.sub] {
			vs = append(vs, v)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read txt: %w", err)
	}
	for _, v := range vs {
		if err := st.AddValue(ctx, v.sub, v.txt); err != nil {
			return 0, fmt.Errorf("import value of %s: %w", v.sub, err)
		}
	}
	return len(vs), nil
}
