package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/store"
)

// A partial import imports the good lines and fails, so a script sees the refused ones by the exit
// status; a clean one succeeds.
func TestProfilesImportFailsOnRefusedLines(t *testing.T) {
	env := testenv.Require(t)
	require.NoError(t, store.Migrate(env.PGURL))
	t.Setenv("OMEGA_PG_URL", env.PGURL)
	t.Setenv("OMEGA_REDIS_ADDR", env.RedisAddr)
	cfg := configFromEnv()
	good, other := testenv.Unique("imp-"), testenv.Unique("imp-")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}

	partial := write("partial.jsonl", `{"user_id":"`+good+`","locale":"en"}`+"\n"+`{"locale":"en"}`+"\n")
	var out bytes.Buffer
	err := runProfiles(context.Background(), cfg, []string{"import", "-f", partial}, &out)
	require.ErrorContains(t, err, "1 of 2 lines refused")
	require.Contains(t, out.String(), "partial.jsonl:2:")
	out.Reset()
	require.NoError(t, runProfiles(context.Background(), cfg, []string{"get", good}, &out), "the good line is in")
	require.Contains(t, out.String(), `"locale": "en"`)

	clean := write("clean.jsonl", `{"user_id":"`+other+`"}`+"\n")
	require.NoError(t, runProfiles(context.Background(), cfg, []string{"import", "-f", clean}, &out))
}
