package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/eventtype"
)

const eventTypesUsage = `usage: omega events types <command> [flags]   (the event catalogue, in PostgreSQL)

  validate -f PATH           check event type files (a file or a directory of .yaml/.yml/.json)
  apply -f PATH              validate all, then store each changed type as a new version
  activate NAME VERSION      make a stored version active (a rollback is an older one)
  list                       every type of the catalogue (default types never stored: version 0)
  get NAME [--version N]     one type, as JSON
  disable NAME               remove a type from the catalogue (apply it again to bring it back)

flags: -o table|json (output format)
`

// eventTypesFlags: the flags each events types command reads.
var eventTypesFlags = map[string][]string{
	"validate": {"f", "o"},
	"apply":    {"f", "o"},
	"list":     {"o"},
	"get":      {"version", "o"},
	"disable":  {"o"},
	"activate": {"o"},
}

func runEventTypes(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, eventTypesUsage)
		return errors.New("missing events types command")
	}
	fs := flag.NewFlagSet("events types "+args[0], flag.ContinueOnError)
	path := fs.String("f", "", "event type file or directory")
	output := fs.String("o", "table", "output: table or json")
	version := fs.Int("version", 0, "get: a stored version (the active one when 0)")
	scope := scopeFlags(fs, eventTypesFlags[args[0]])
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	load := func() ([]event.Type, error) {
		return loadValid(*path, event.LoadTypes, func(t event.Type) error { return t.ValidateNew() })
	}
	if args[0] == "validate" {
		ts, err := load()
		if err != nil {
			return err
		}
		for _, t := range ts {
			fmt.Fprintf(stdout, "ok  %s\n", t.Name)
		}
		return nil
	}
	switch args[0] {
	case "apply", "list", "get", "disable", "activate":
	default:
		fmt.Fprint(stdout, eventTypesUsage)
		return fmt.Errorf("unknown events types command %q", args[0])
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := eventTypeStore(pool)
	switch args[0] {
	case "apply":
		ts, err := load()
		if err != nil {
			return err
		}
		var applied []eventtype.Applied
		for _, t := range ts {
			a, err := st.Apply(ctx, t)
			if err != nil {
				return err
			}
			applied = append(applied, a)
		}
		return render(stdout, *output, applied, []string{"EVENT TYPE", "VERSION", "STATUS"}, func(a eventtype.Applied) []any {
			return []any{a.ID, a.Version, a.Status}
		})
	case "list":
		ts, err := st.List(ctx)
		if err != nil {
			return err
		}
		return render(stdout, *output, ts, []string{"EVENT TYPE", "VERSION", "SCOPE", "USES", "ATTRS", "STATE", "DESCRIPTION"}, func(t event.Type) []any {
			state, scope := "active", t.Scope
			if t.Disabled {
				state = "disabled"
			}
			if t.Version == 0 {
				state = "default"
			}
			if scope == "" {
				scope = event.ScopeUser
			}
			attrs := make([]string, 0, len(t.Attrs))
			for _, a := range t.Attrs {
				s := a.Name
				if a.Type != "" {
					s += ":" + a.Type
				}
				if a.Required {
					s += "!"
				}
				attrs = append(attrs, s)
			}
			return []any{t.Name, t.Version, scope, strings.Join(t.Uses, ","), orDash(strings.Join(attrs, ",")), state, t.Description}
		})
	case "get":
		if fs.NArg() != 1 {
			return errors.New("usage: omega events types get NAME [--version N]")
		}
		t, err := st.Get(ctx, fs.Arg(0))
		if *version != 0 {
			t, err = st.Version(ctx, fs.Arg(0), *version)
		}
		if err != nil {
			if *version != 0 {
				return fmt.Errorf("event type %s version %d: %w", fs.Arg(0), *version, err)
			}
			return fmt.Errorf("event type %s: %w", fs.Arg(0), err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	case "activate":
		name, v, err := idVersion(fs, "events types")
		if err != nil {
			return err
		}
		if err := st.Activate(ctx, name, v); err != nil {
			return fmt.Errorf("event type %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "activated %s version %d\n", name, v)
		return nil
	default:
		if fs.NArg() != 1 {
			return errors.New("usage: omega events types disable NAME")
		}
		if err := st.Disable(ctx, fs.Arg(0)); err != nil {
			return fmt.Errorf("event type %s: %w", fs.Arg(0), err)
		}
		fmt.Fprintf(stdout, "disabled %s\n", fs.Arg(0))
		return nil
	}
}
