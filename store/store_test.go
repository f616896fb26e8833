package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// A database records the version it migrated to, nothing of the files: a migration that changed
// after it ran, or a number given to another file, would never run again there. The applied
// migrations are frozen; a schema change is a new file.
func TestMigrationsFrozen(t *testing.T) {
	want := map[string]string{
		"001_audit_records.up.sql":     "b7e31330f7374816",
		"002_rules.up.sql":             "6a82d88d39ffdc80",
		"003_journeys_profiles.up.sql": "8f72ec98977aadd2",
		"004_profile_consent.up.sql":   "c7fb6dec6afe16a3",
		"005_profile_addresses.up.sql": "c4cbd6b992cd4a5b",
		"006_inbox.up.sql":             "393270313d29e4f8",
		"007_api_keys.up.sql":          "028727db1f8c8bf8",
		"008_funnel_index.up.sql":      "4a42092537a930d0",
		"009_list_members.up.sql":      "c181038250f6a643",
		"010_tracking.up.sql":          "7daed0b1d1d0d553",
		"011_tracking_guards.up.sql":   "b66d99e25e14098c",
		"012_event_types.up.sql":       "96a6415dd5962149",
		"013_holdout_index.up.sql":     "ba7202d917df040e",
		"014_reach_rollup.up.sql":      "e1e64b4777f5fa62",
	}
	ups, err := fs.Glob(migrations, "migrations/*.up.sql")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ups), len(want), "a migration went missing")
	for _, name := range ups[:len(want)] {
		b, err := fs.ReadFile(migrations, name)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		base := name[len("migrations/"):]
		h, ok := want[base]
		require.True(t, ok, "%s: not a released migration's name (renamed or renumbered?)", base)
		require.Equal(t, h, hex.EncodeToString(sum[:8]), "%s changed after release: add a new migration instead", base)
	}
}

func TestIsDataError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "not null violation", err: &pgconn.PgError{Code: "23502"}, want: true},
		{name: "invalid text representation, wrapped", err: fmt.Errorf("attribute: %w", &pgconn.PgError{Code: "22P02"}), want: true},
		{name: "admin shutdown", err: &pgconn.PgError{Code: "57P01"}, want: false},
		{name: "connection refused", err: errors.New("dial tcp: connection refused"), want: false},
		{name: "nil", err: nil, want: false},
	} {
		t.Run(tt.name, func(t *testing.T) { require.Equal(t, tt.want, IsDataError(tt.err)) })
	}
}
