package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/omegareach/omega/journey"
)

const templatesUsage = `usage: omega templates <command> [flags]

Templates live in their journey and version with it: apply them with omega journeys apply.

  list JOURNEY                                   the templates of a journey's active version
  preview JOURNEY TEMPLATE [--locale L] [--fields JSON] [--field k=v ...]
                                                 render one over sample fields; a variable that
                                                 neither the fields nor the defaults give fails

flags: -o table|json (output format)
`

// templatesFlags: the flags each templates command reads.
var templatesFlags = map[string][]string{
	"list":    {"o"},
	"preview": {"locale", "fields", "field", "o"},
}

func runTemplates(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, templatesUsage)
		return errors.New("missing templates command")
	}
	fs := flag.NewFlagSet("templates "+args[0], flag.ContinueOnError)
	locale := fs.String("locale", "", "the user's locale")
	fieldsJSON := fs.String("fields", "", "sample fields, a JSON object")
	output := fs.String("o", "table", "output: table or json")
	fields := attrFlags{}
	fs.Var(fields, "field", "key=value (repeatable)")
	scope := scopeFlags(fs, templatesFlags[args[0]])
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return errors.New("JOURNEY is required")
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	j, err := journey.NewStore(pool, journeyCatalog()).Get(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		ids := slices.Sorted(maps.Keys(j.Templates))
		return render(stdout, *output, ids, []string{"TEMPLATE", "LOCALES", "TITLE"}, func(id string) []any {
			t := j.Templates[id]
			locs := slices.Sorted(maps.Keys(t.Locales))
			return []any{id, orDash(strings.Join(locs, ",")), orDash(t.Title)}
		})
	case "preview":
		if fs.NArg() != 2 {
			return errors.New("usage: omega templates preview JOURNEY TEMPLATE")
		}
		t, ok := j.Templates[fs.Arg(1)]
		if !ok {
			return fmt.Errorf("journey %s (version %d) has no template %q", j.ID, j.Version, fs.Arg(1))
		}
		data := map[string]any{}
		if *fieldsJSON != "" {
			if err := json.Unmarshal([]byte(*fieldsJSON), &data); err != nil {
				return fmt.Errorf("--fields: %w", err)
			}
		}
		maps.Copy(data, fields)
		title, body, err := t.Render(*locale, data)
		if err != nil {
			return err
		}
		if *output == "json" {
			return render(stdout, "json", []map[string]any{{"title": title, "body": body, "journey_version": j.Version}}, nil, nil)
		}
		fmt.Fprintf(stdout, "title: %s\nbody:  %s\n", title, body)
		return nil
	default:
		fmt.Fprint(stdout, templatesUsage)
		return fmt.Errorf("unknown templates command %q", args[0])
	}
}
