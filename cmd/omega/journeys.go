package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/omegareach/omega/journey"
)

const journeysUsage = `usage: omega journeys <command> [flags]

  validate -f PATH      check journey files (a file or a directory of .yaml/.yml/.json)
  apply -f PATH [--draft]  validate all, then store each changed journey as a new version
                        (and activate it, unless --draft)
  activate ID VERSION   make a stored version the one new runs take
  list                  the active version of every journey
  get ID [--version N]  one journey, as JSON
  disable ID            stop new runs of a journey (runs in flight go on)

flags: -o table|json (output format); validate works offline, against the default event catalogue
plus --types PATH (event type files, see omega events types)
`

// journeysFlags: the flags each journeys command reads.
var journeysFlags = map[string][]string{
	"validate": {"f", "types", "o"},
	"apply":    {"f", "draft", "o"},
	"list":     {"o"},
	"get":      {"version", "o"},
	"disable":  {"o"},
	"activate": {"o"},
}

func runJourneys(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, journeysUsage)
		return errors.New("missing journeys command")
	}
	fs := flag.NewFlagSet("journeys "+args[0], flag.ContinueOnError)
	path := fs.String("f", "", "journey file or directory")
	output := fs.String("o", "table", "output: table or json")
	draft := fs.Bool("draft", false, "apply: store new versions without activating them")
	version := fs.Int("version", 0, "get: a stored version (the active one when 0)")
	typesPath := fs.String("types", "", "validate: event type files besides the default catalogue")
	scope := scopeFlags(fs, journeysFlags[args[0]])
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	cat := journeyCatalog()
	events, err := offlineEvents(*typesPath)
	if err != nil {
		return err
	}
	cat.Events = events
	loadValid := func() ([]journey.Journey, error) {
		return loadValid(*path, journey.Load, func(j journey.Journey) error { return journey.Validate(j, cat) })
	}
	if args[0] == "validate" {
		js, err := loadValid()
		if err != nil {
			return err
		}
		for _, j := range js {
			fmt.Fprintf(stdout, "ok  %s\n", j.ID)
		}
		return nil
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	cat = journeyCatalogFor(pool) // against the stored event catalogue
	st := journey.NewStore(pool, cat)
	switch args[0] {
	case "apply":
		js, err := loadValid()
		if err != nil {
			return err
		}
		var applied []journey.Applied
		apply := st.Apply
		if *draft {
			apply = st.Draft
		}
		for _, j := range js {
			a, err := apply(ctx, j)
			if err != nil {
				return err
			}
			applied = append(applied, a)
		}
		return render(stdout, *output, applied, []string{"JOURNEY", "VERSION", "STATUS"}, func(a journey.Applied) []any {
			return []any{a.ID, a.Version, a.Status}
		})
	case "list":
		js, err := st.List(ctx)
		if err != nil {
			return err
		}
		return render(stdout, *output, js, []string{"JOURNEY", "VERSION", "STEPS", "STATE", "DESCRIPTION"}, func(j journey.Journey) []any {
			state := "active"
			if j.Disabled {
				state = "disabled"
			}
			return []any{j.ID, j.Version, len(j.Steps), state, j.Description}
		})
	case "get":
		if fs.NArg() != 1 {
			return errors.New("usage: omega journeys get ID")
		}
		j, err := st.Get(ctx, fs.Arg(0))
		if *version != 0 {
			j, err = st.Version(ctx, fs.Arg(0), *version)
		}
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(j)
	case "activate":
		id, v, err := idVersion(fs, "journeys")
		if err != nil {
			return err
		}
		if err := st.Activate(ctx, id, v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "activated %s version %d (new runs take it)\n", id, v)
		return nil
	case "disable":
		if fs.NArg() != 1 {
			return errors.New("usage: omega journeys disable ID")
		}
		if err := st.Disable(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "disabled %s\n", fs.Arg(0))
		return nil
	default:
		fmt.Fprint(stdout, journeysUsage)
		return fmt.Errorf("unknown journeys command %q", args[0])
	}
}
