package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/delegated/delegated/store"
)

func migrateCommand() command {
	c := command{
		Name:  "migrate",
		Usage: "--to postgres://... [--config FILE | --from FILE]",
		Short: "Copy the SQLite store into an empty PostgreSQL database and verify the counts",
	}
	c.Run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(c, stderr)
		path := fs.String("config", "config.toml", "configuration `file` whose [store] is the SQLite source")
		from := fs.String("from", "", "SQLite database `file` to copy (instead of the one in --config)")
		to := fs.String("to", "", "PostgreSQL `DSN` to copy into (postgres://user@host/db)")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError("unexpected argument %q", fs.Arg(0))
		}
		if !strings.HasPrefix(*to, "postgres://") && !strings.HasPrefix(*to, "postgresql://") {
			return usageError("--to must be a postgres:// URL")
		}
		srcPath := *from
		if srcPath == "" {
			cfg, err := loadConfig(*path)
			if err != nil {
				return err
			}
			if cfg.Store.Driver != "sqlite3" {
				return usageError("the store in %s is %q, not SQLite; pass --from FILE", *path, cfg.Store.Driver)
			}
			srcPath = cfg.Store.DSN
		}
		// Schema steps and failures only; the table goes to stdout.
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		// Opening applies pending migrations to both, so their schemas
		// match before rows move.
		src, err := store.Open(ctx, "sqlite3", srcPath, store.Options{Logger: log})
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := store.Open(ctx, "postgres", *to, store.Options{Logger: log})
		if err != nil {
			return err
		}
		defer dst.Close()
		report, err := store.CopyTo(ctx, src, dst)
		if len(report) > 0 {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TABLE\tSOURCE ROWS\tCOPIED ROWS")
			for _, r := range report {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Table, r.Source, r.Copied)
			}
			tw.Flush()
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "copied %s into PostgreSQL; counts verified\n", srcPath)
		return nil
	}
	return c
}
