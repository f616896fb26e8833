package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/omegareach/omega/profile"
)

const profilesUsage = `usage: omega profiles <command> [flags]

  import -f FILE [--format jsonl|csv]   bulk upsert (format from the extension when omitted);
                                        bad lines are reported by number and skipped
  get USER                              one profile, as JSON
  set -f FILE.json                      upsert one profile
`

func runProfiles(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, profilesUsage)
		return errors.New("missing profiles command")
	}
	fs := flag.NewFlagSet("profiles "+args[0], flag.ContinueOnError)
	path := fs.String("f", "", "file")
	format := fs.String("format", "", "jsonl or csv")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	// Only get takes a positional argument; a stray one would hide the flags after it.
	if args[0] != "get" && fs.NArg() > 0 {
		fmt.Fprint(stdout, profilesUsage)
		return fmt.Errorf("profiles %s takes no argument %q (flags: -f FILE)", args[0], fs.Arg(0))
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb := cfg.newRedis()
	defer rdb.Close()
	st := &profile.Cached{Store: profile.NewStore(pool), Redis: rdb}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	switch args[0] {
	case "import":
		if *path == "" {
			return errors.New("-f is required")
		}
		f, err := os.Open(*path)
		if err != nil {
			return err
		}
		defer f.Close()
		if *format == "" {
			*format = strings.TrimPrefix(filepath.Ext(*path), ".")
		}
		rep, err := profile.Import(ctx, st, f, *format, func(r profile.Report) {
			fmt.Fprintf(os.Stderr, "\rimported %d of %d lines read, %d refused", r.Imported, r.Lines, r.Refused)
		})
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return err
		}
		for _, e := range rep.Errors {
			fmt.Fprintf(stdout, "%s:%d: %s\n", *path, e.Line, e.Reason)
		}
		fmt.Fprintf(stdout, "%d lines, %d imported, %d refused, %d repeated a user (the last kept)\n", rep.Lines, rep.Imported, rep.Refused, rep.Repeated)
		if rep.Refused > 0 {
			// A script sees a partial import by the exit status; the good lines are in.
			return fmt.Errorf("%s: %d of %d lines refused (the %d others imported)", *path, rep.Refused, rep.Lines, rep.Imported)
		}
		return nil
	case "get":
		if fs.NArg() != 1 {
			return errors.New("usage: omega profiles get USER")
		}
		p, err := st.Get(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return enc.Encode(p)
	case "set":
		if *path == "" {
			return errors.New("-f is required")
		}
		b, err := os.ReadFile(*path)
		if err != nil {
			return err
		}
		var p profile.Profile
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("%s: %w", *path, err)
		}
		if err := st.Upsert(ctx, p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "upserted %s\n", p.UserID)
		return nil
	default:
		fmt.Fprint(stdout, profilesUsage)
		return fmt.Errorf("unknown profiles command %q", args[0])
	}
}
