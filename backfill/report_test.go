package backfill

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/workflows"
)

func TestJobValidate(t *testing.T) {
	now := time.Date(2026, 11, 30, 15, 0, 0, 0, time.UTC)
	rule := cep.Rule{ID: "cart-add"}
	tests := []struct {
		name string
		job  Job
		want string // the field named; "" when valid
	}{
		{"valid", Job{Rule: rule, Since: now.Add(-168 * time.Hour)}, ""},
		{"valid with start", Job{Rule: rule, Since: now.Add(-time.Hour), Start: true, StartWithin: time.Hour}, ""},
		{"no rule", Job{Since: now.Add(-time.Hour)}, "rule_id"},
		{"no since", Job{Rule: rule}, "since"},
		{"since now", Job{Rule: rule, Since: now}, "since"},
		{"since in the future", Job{Rule: rule, Since: now.Add(time.Minute)}, "since"},
		{"negative start_within", Job{Rule: rule, Since: now.Add(-time.Hour), Start: true, StartWithin: -time.Hour}, "start_within"},
		{"start_within without start", Job{Rule: rule, Since: now.Add(-time.Hour), StartWithin: time.Hour}, "start_within"},
		{"negative sample", Job{Rule: rule, Since: now.Add(-time.Hour), SampleSize: -1}, "sample_size"},
		{"sample too large", Job{Rule: rule, Since: now.Add(-time.Hour), SampleSize: MaxSampleSize + 1}, "sample_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.job.Validate(now)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			var arg *ArgError
			require.ErrorAs(t, err, &arg)
			require.Equal(t, tt.want, arg.Field)
		})
	}
}

func match(user, key string, at time.Time) workflows.Match {
	return workflows.Match{RuleID: "r", UserID: user, MatchKey: key, EventIDs: []string{key}, EventTime: at}
}

func TestReportPerDay(t *testing.T) {
	day0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	at := func(days int, h time.Duration) time.Time { return day0.AddDate(0, 0, days).Add(h) }
	tests := []struct {
		name       string
		matches    []workflows.Match
		startAfter time.Time
		want       []Day
		wantTotal  int64
		wantSample []string // match keys
		wantRecent []string
		wantTooOld int64
	}{
		{name: "nothing", want: []Day{}},
		{
			name: "per UTC day of the event time, oldest first, whatever the order found",
			matches: []workflows.Match{
				match("b", "e3", at(2, 23*time.Hour+59*time.Minute)),
				match("a", "e1", at(0, 0)),
				match("a", "e2", at(0, 23*time.Hour)),
				// 01:00 on the 26th in UTC+2 is 23:00 on the 25th in UTC.
				match("c", "e4", time.Date(2026, 11, 26, 1, 0, 0, 0, time.FixedZone("UTC+2", 2*3600))),
			},
			want:       []Day{{Date: "2026-11-23", Matches: 2}, {Date: "2026-11-25", Matches: 2}},
			wantTotal:  4,
			wantSample: []string{"e1", "e2"},
		},
		{
			name: "a match handed over twice counts once",
			matches: []workflows.Match{
				match("a", "e1", at(0, 0)), match("a", "e1", at(0, 0)), match("b", "e1", at(0, 0)),
			},
			want:       []Day{{Date: "2026-11-23", Matches: 2}},
			wantTotal:  2,
			wantSample: []string{"e1", "e1"},
		},
		{
			name: "with start: the recent ones to start, the rest too old",
			matches: []workflows.Match{
				match("a", "e1", at(0, 0)), match("a", "e2", at(6, time.Hour)), match("b", "e3", at(6, 2*time.Hour)),
			},
			startAfter: at(6, time.Hour),
			want:       []Day{{Date: "2026-11-23", Matches: 1}, {Date: "2026-11-29", Matches: 2}},
			wantTotal:  3,
			wantSample: []string{"e1", "e2"},
			wantRecent: []string{"e2", "e3"},
			wantTooOld: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTally(2, tt.startAfter)
			for _, m := range tt.matches {
				tl.add(m)
			}
			var rep Report
			tl.report(&rep)
			require.Equal(t, tt.want, rep.Days)
			require.Equal(t, tt.wantTotal, rep.Matches)
			var sample, recent []string
			for _, m := range rep.Sample {
				sample = append(sample, m.MatchKey)
			}
			for _, m := range tl.recent {
				recent = append(recent, m.MatchKey)
			}
			require.Equal(t, tt.wantSample, sample)
			require.Equal(t, tt.wantRecent, recent)
			require.Equal(t, tt.wantTooOld, rep.TooOld)
		})
	}
}

func TestReportStartedPerDay(t *testing.T) {
	rep := Report{Days: []Day{{Date: "2026-11-28", Matches: 3}, {Date: "2026-11-29", Matches: 1}}}
	rep.started(match("a", "e1", time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)))
	require.Equal(t, int64(1), rep.Started)
	require.Equal(t, []Day{{Date: "2026-11-28", Matches: 3}, {Date: "2026-11-29", Matches: 1, Started: 1}}, rep.Days)
}
