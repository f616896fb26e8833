package api_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/backfill"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/versioned"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/workflows"
)

// ruleVersions is a rule store holding fixed versions (id -> versions, the last one active).
type ruleVersions map[string][]cep.Rule

func (s ruleVersions) Validate(cep.Rule) error { return nil }
func (s ruleVersions) Apply(context.Context, cep.Rule) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (s ruleVersions) Draft(context.Context, cep.Rule) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (s ruleVersions) Activate(context.Context, string, int) error { return nil }
func (s ruleVersions) Disable(context.Context, string) error       { return nil }
func (s ruleVersions) List(context.Context) ([]cep.Rule, error)    { return nil, nil }
func (s ruleVersions) Get(_ context.Context, id string) (cep.Rule, error) {
	vs := s[id]
	if len(vs) == 0 || id == "new" { // "new" is only drafted: no active version
		return cep.Rule{}, versioned.ErrNotFound
	}
	return vs[len(vs)-1], nil
}
func (s ruleVersions) Version(_ context.Context, id string, v int) (cep.Rule, error) {
	for _, r := range s[id] {
		if r.Version == v {
			return r, nil
		}
	}
	return cep.Rule{}, versioned.ErrNotFound
}

// fakeBackfill reports progress twice and a fixed report, and remembers the job it ran.
type fakeBackfill struct{ job backfill.Job }

func (f *fakeBackfill) Run(_ context.Context, job backfill.Job, progress func(backfill.Progress)) (backfill.Report, error) {
	if err := job.Validate(time.Now()); err != nil {
		return backfill.Report{}, err
	}
	f.job = job
	progress(backfill.Progress{Read: 5, Total: 10, Partitions: 2, PartitionsDone: 1, Matches: 1})
	progress(backfill.Progress{Read: 10, Total: 10, Partitions: 2, PartitionsDone: 2, Matches: 2})
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	return backfill.Report{RuleID: job.Rule.ID, RuleVersion: job.Rule.Version, Since: job.Since, Until: at, Records: 10, Matches: 2,
		Days:   []backfill.Day{{Date: "2026-11-28", Matches: 1}, {Date: "2026-11-29", Matches: 1}},
		Sample: []workflows.Match{{RuleID: job.Rule.ID, UserID: "u1", MatchKey: "e1", EventIDs: []string{"e1"}, EventTime: at}}}, nil
}

func TestBackfillRule(t *testing.T) {
	store := ruleVersions{"cart-add": {{ID: "cart-add", Version: 1}, {ID: "cart-add", Version: 2}}, "new": {{ID: "new", Version: 1}}}
	fb := &fakeBackfill{}
	srv := serve(t, api.Config{Audit: audit.NewStore(nil), RuleStore: store, Backfill: fb})
	rules := omegav1connect.NewRuleServiceClient(keyed(srv, adminKey), srv.URL)
	weekAgo := timestamppb.New(time.Now().Add(-168 * time.Hour))

	call := func(c omegav1connect.RuleServiceClient, req *omegav1.BackfillRuleRequest) ([]*omegav1.BackfillRuleResponse, error) {
		stream, err := c.BackfillRule(context.Background(), connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		defer stream.Close()
		var out []*omegav1.BackfillRuleResponse
		for stream.Receive() {
			out = append(out, stream.Msg())
		}
		return out, stream.Err()
	}

	t.Run("invalid arguments name the field", func(t *testing.T) {
		tests := []struct {
			name string
			req  *omegav1.BackfillRuleRequest
			want string
		}{
			{"no rule", &omegav1.BackfillRuleRequest{Since: weekAgo}, "rule_id: required"},
			{"unknown rule", &omegav1.BackfillRuleRequest{RuleId: "nope", Since: weekAgo}, `rule_id: unknown rule "nope"`},
			{"unknown version", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Version: 9, Since: weekAgo}, `version: rule "cart-add" has no version 9`},
			{"only drafted, no version", &omegav1.BackfillRuleRequest{RuleId: "new", Since: weekAgo}, `version: rule "new" has no active version`},
			{"no since", &omegav1.BackfillRuleRequest{RuleId: "cart-add"}, "since: required"},
			{"since in the future", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: timestamppb.New(time.Now().Add(time.Hour))}, "since: "},
			{"bad since", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}}, "since: "},
			{"negative start_within", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: weekAgo, Start: true,
				StartWithin: durationpb.New(-time.Hour)}, "start_within: must not be negative"},
			{"start_within without start", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: weekAgo,
				StartWithin: durationpb.New(time.Hour)}, "start_within: only with start"},
			{"sample too large", &omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: weekAgo, SampleSize: 1000}, "sample_size: "},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := call(rules, tt.req)
				require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
				require.Contains(t, err.Error(), "invalid_argument: "+tt.want)
			})
		}
	})

	t.Run("admin scope only", func(t *testing.T) {
		_, err := call(omegav1connect.NewRuleServiceClient(keyed(srv, readKey), srv.URL),
			&omegav1.BackfillRuleRequest{RuleId: "cart-add", Since: weekAgo})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
	})

	t.Run("progress then the report", func(t *testing.T) {
		calls := metrics.APIRequests.WithLabelValues(omegav1connect.RuleServiceBackfillRuleProcedure, "ok")
		before := counted(t, calls)
		msgs, err := call(rules, &omegav1.BackfillRuleRequest{RuleId: "cart-add", Version: 1, Since: weekAgo, Start: true,
			StartWithin: durationpb.New(12 * time.Hour)})
		require.NoError(t, err)
		require.Len(t, msgs, 3)
		require.Equal(t, int64(5), msgs[0].GetProgress().GetRecordsRead())
		require.Nil(t, msgs[1].GetReport())
		rep := msgs[2].GetReport()
		require.NotNil(t, rep)
		require.Equal(t, int64(10), msgs[2].GetProgress().GetRecordsRead())
		require.Equal(t, int32(1), rep.GetRuleVersion(), "the version asked for, not the active one")
		require.Equal(t, int64(2), rep.GetMatches())
		require.Len(t, rep.GetDays(), 2)
		require.Equal(t, "reach/cart-add/u1/e1", rep.GetSample()[0].GetReachId())
		require.Equal(t, 1, fb.job.Rule.Version)
		require.True(t, fb.job.Start)
		require.Equal(t, 12*time.Hour, fb.job.StartWithin)
		require.WithinDuration(t, weekAgo.AsTime(), fb.job.Since, time.Millisecond)
		require.Equal(t, before+1, counted(t, calls), "the call is counted")
	})
}

// counted reads a counter.
func counted(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
