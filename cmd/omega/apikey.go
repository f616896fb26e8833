package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/omegareach/omega/internal/apikey"
)

const apikeyUsage = `usage: omega apikey <command> [flags]

  create --name NAME --scopes S[,S] [--rate R] [--save FILE]
                     make a key (scopes: ingest, trigger, read, admin; admin grants all) and print it
                     once; --rate is requests/s per API replica (the server's default when 0).
                     With --save, a live key already in FILE is reused, else the new key is written there.
  revoke ID|NAME     end a key (API replicas stop taking it within 10 s)
  list               every key, revoked ones included (never the secrets)

flags: -o table|json (output format)
`

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
	output := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args[1:]); err != nil {
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
		if *save != "" {
			if b, err := os.ReadFile(*save); err == nil {
				if _, err := st.Lookup(ctx, strings.TrimSpace(string(b))); err == nil {
					fmt.Fprintln(stdout, strings.TrimSpace(string(b)))
					return nil
				}
			}
		}
		var ss []string
		if *scopes != "" {
			ss = strings.Split(*scopes, ",")
		}
		if *save != "" {
			// The saved key is gone (revoked, or a fresh database): its name is free again.
			_, _ = st.Revoke(ctx, *name)
		}
		k, secret, err := st.Create(ctx, *name, ss, *rate)
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
