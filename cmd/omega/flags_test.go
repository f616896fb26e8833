package main

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
)

// A command's flag set shared with its siblings takes and lists only the command's own flags.
func TestScopeFlags(t *testing.T) {
	parse := func(names []string, args ...string) (string, error) {
		fs := flag.NewFlagSet("reaches get", flag.ContinueOnError)
		var usage bytes.Buffer
		fs.SetOutput(&usage)
		fs.String("user", "", "user ID")
		fs.String("o", "table", "output")
		check := scopeFlags(fs, names)
		if err := parseInterspersed(fs, args); err != nil {
			return usage.String(), err
		}
		return usage.String(), check()
	}
	_, err := parse([]string{"o"}, "ID", "-o", "json")
	require.NoError(t, err)
	_, err = parse([]string{"o"}, "ID", "--user", "u")
	require.EqualError(t, err, "omega reaches get does not take --user (it takes -o)")
	usage, err := parse([]string{"o"}, "-h")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, usage, "-o\n")
	require.NotContains(t, usage, "user")
	_, err = parse(nil, "--user", "u")
	require.NoError(t, err, "an unknown command's flags are left to it")
}
