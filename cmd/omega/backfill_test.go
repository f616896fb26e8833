package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

func TestRuleBackfillArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no rule", []string{"--since", "168h"}, "want one RULE"},
		{"two rules", []string{"a", "b", "--since", "168h"}, "want one RULE"},
		{"no since", []string{"cart-add"}, "--since: required"},
		{"negative since", []string{"cart-add", "--since", "-1h"}, "--since: required"},
		{"bad since", []string{"cart-add", "--since", "a week"}, "invalid value"},
		{"bad output", []string{"cart-add", "--since", "1h", "-o", "yaml"}, "-o yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, progress bytes.Buffer
			err := runRuleBackfill(context.Background(), config{}, tt.args, &out, &progress)
			require.ErrorContains(t, err, tt.want)
			require.Empty(t, progress.String())
		})
	}
}

func TestPrintBackfill(t *testing.T) {
	at := func(s string) *timestamppb.Timestamp {
		ts, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return timestamppb.New(ts)
	}
	rep := &omegav1.BackfillReport{RuleId: "view-expensive", RuleVersion: 2, Since: at("2026-11-23T15:00:00Z"),
		Until: at("2026-11-30T15:00:00Z"), Records: 56, Matches: 3,
		Days: []*omegav1.BackfillDay{{Date: "2026-11-23", Matches: 1}, {Date: "2026-11-30", Matches: 2, Started: 1}},
		Sample: []*omegav1.BackfillMatch{{UserId: "u1", ReachId: "reach/view-expensive/u1/e1", EventIds: []string{"e1"},
			EventTime: at("2026-11-23T20:00:00Z")}}}

	var b bytes.Buffer
	require.NoError(t, printBackfill(&b, rep))
	require.Equal(t, `rule view-expensive v2: 56 records from 2026-11-23T15:00:00Z to 2026-11-30T15:00:00Z, 3 matches

DAY (UTC)   MATCHES
2026-11-23  1
2026-11-30  2
total       3

nobody was reached (--start starts the recent matches' reaches)

sample (the first 1 by event time):
EVENT TIME            USER  EVENTS  REACH ID
2026-11-23T20:00:00Z  u1    e1      reach/view-expensive/u1/e1
`, b.String())

	rep.StartAfter, rep.Started, rep.Existing, rep.TooOld, rep.Sample = at("2026-11-29T15:00:00Z"), 1, 1, 1, nil
	b.Reset()
	require.NoError(t, printBackfill(&b, rep))
	require.Equal(t, `rule view-expensive v2: 56 records from 2026-11-23T15:00:00Z to 2026-11-30T15:00:00Z, 3 matches

DAY (UTC)   MATCHES  STARTED
2026-11-23  1        0
2026-11-30  2        1
total       3        1

started 1 reaches (matches since 2026-11-29T15:00:00Z); 1 existed already; 1 older matches only reported
`, b.String())

	require.Equal(t, "5/10 records (50.0%), 1/2 partitions done, 3 matches",
		progressLine(&omegav1.BackfillProgress{RecordsRead: 5, RecordsTotal: 10, PartitionsDone: 1, Partitions: 2, Matches: 3}))
}
