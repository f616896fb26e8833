package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/omegareach/omega/internal/apikey"
)

const apikeyUsage = `usage: omega apikey <command> [flags]

  create --name NAME --scopes S[,S] [--rate R] [--save FILE] [--replace]
                     make a key (scopes: ingest, trigger, read, admin; admin grants all) and print it
                     once; --rate is requests/s per API replica (the server's default when 0).
                     With --save, the live key in FILE is reused when it is NAME's with these
                     scopes, else the new key is written there. --replace revokes NAME's live key.
  revoke ID|NAME     end a key: the live key with this ID, else the one with this name
                     (API replicas stop taking it within 10 s)
  list               every key, revoked ones included (never the secrets)

flags: -o table|json (output format)
`

// apikeyFlags: the flags each apikey command reads.
var apikeyFlags = map[string][]string{
	"create": {"name", "scopes", "rate", "save", "replace", "o"},
	"revoke": {"o"},
	"list":   {"o"},
}

// runAPIKeys talks to PostgreSQL directly: creating the first key cannot need a key.
func runAPIKeys(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, apikeyUsage)
		return errors.New("missing apikey command")
	}
	fs := flag.NewFlagSet("apikey "+args[0], flag.ContinueOnError)
	name := fs.String("name", "", "who holds the key")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	rate := fs.Float64("rate", 0, "requests per second")
	save := fs.String("save", "", "file the key is kept in (reused while live)")
	replace := fs.Bool("replace", false, "revoke the live key of this name first")
	output := fs.String("o", "table", "output: table or json")
	scope := scopeFlags(fs, apikeyFlags[args[0]])
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := apikey.NewStore(pool)
	switch args[0] {
	case "create":
		var ss []string
		if *scopes != "" {
			ss = strings.Split(*scopes, ",")
		}
		if *save != "" {
			// A live key already in the file is reused, if it is this name's key with these scopes.
			b, err := os.ReadFile(*save)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if saved := strings.TrimSpace(string(b)); saved != "" {
				k, err := st.Lookup(ctx, saved)
				switch {
				case err == nil && k.Name == *name && slices.Equal(k.Scopes, ss):
					fmt.Fprintln(stdout, saved)
					return nil
				case err == nil:
					return fmt.Errorf("%s holds the live key %s (%s, scopes %s), not a %s key with scopes %s: revoke it or choose another file",
						*save, k.ID, k.Name, strings.Join(k.Scopes, ","), *name, *scopes)
				case !errors.Is(err, apikey.ErrNotFound):
					return err
				}
			}
		}
		if *replace {
			if _, err := st.Revoke(ctx, *name); err != nil && !errors.Is(err, apikey.ErrNotFound) {
				return err
			}
		}
		k, secret, err := st.Create(ctx, *name, ss, *rate)
		if errors.Is(err, apikey.ErrNameTaken) {
			return fmt.Errorf("%w: revoke it first (omega apikey revoke %s) or pass --replace", err, *name)
		}
		if err != nil {
			return err
		}
		if *save != "" {
			if err := os.WriteFile(*save, []byte(secret+"\n"), 0o600); err != nil {
				return err
			}
		}
		if *output == "json" {
			return render(stdout, "json", []struct {
				apikey.Key
				Secret string `json:"key"`
			}{{k, secret}}, nil, nil)
		}
		if *save == "" {
			fmt.Fprintf(os.Stderr, "key %s (%s, scopes %s): shown once, store it now\n", k.ID, k.Name, strings.Join(k.Scopes, ","))
		}
		fmt.Fprintln(stdout, secret)
		return nil
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("usage: omega apikey revoke ID|NAME")
		}
		k, err := st.Revoke(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s)\n", k.ID, k.Name)
		return nil
	case "list":
		ks, err := st.List(ctx)
		if err != nil {
			return err
		}
		return render(stdout, *output, ks, []string{"ID", "NAME", "SCOPES", "RATE", "CREATED", "REVOKED"}, func(k apikey.Key) []any {
			revoked, rate := "-", "default"
			if !k.RevokedAt.IsZero() {
				revoked = k.RevokedAt.Format(time.DateTime)
			}
			if k.RateLimit > 0 {
				rate = fmt.Sprintf("%g/s", k.RateLimit)
			}
			return []any{k.ID, k.Name, strings.Join(k.Scopes, ","), rate, k.CreatedAt.Format(time.DateTime), revoked}
		})
	default:
		fmt.Fprint(stdout, apikeyUsage)
		return fmt.Errorf("unknown apikey command %q", args[0])
	}
}
