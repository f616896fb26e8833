package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/backfill"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/workflows"
)

// Backfiller runs backfills (backfill.Runner): progress is called from the calling goroutine.
type Backfiller interface {
	Run(ctx context.Context, job backfill.Job, progress func(backfill.Progress)) (backfill.Report, error)
}

// BackfillRule streams a backfill's progress and report (see the proto). The call runs as long as
// the backfill does: no call timeout applies (streamingCalls), and cancelling it stops the
// backfill, which then deletes its group and state.
func (h ruleService) BackfillRule(ctx context.Context, req *connect.Request[omegav1.BackfillRuleRequest],
	stream *connect.ServerStream[omegav1.BackfillRuleResponse]) error {
	if h.backfill == nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("backfills need Kafka and Redis, which this server is not given"))
	}
	job, err := h.backfillJob(ctx, req.Msg)
	if err != nil {
		return err
	}
	var last *omegav1.BackfillProgress
	rep, err := h.backfill.Run(ctx, job, func(p backfill.Progress) {
		last = progressMsg(p)
		// A caller gone away ends ctx, and with it the backfill: the send's error adds nothing.
		_ = stream.Send(&omegav1.BackfillRuleResponse{Progress: last})
	})
	var arg *backfill.ArgError
	switch {
	case errors.As(err, &arg):
		return invalid(arg.Field, "%s", arg.Reason)
	case errors.Is(err, backfill.ErrNoStarter):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("start: this server starts no reaches from backfills"))
	case ctx.Err() != nil:
		return connect.NewError(connect.CodeCanceled, fmt.Errorf("backfill cancelled: %w", ctx.Err()))
	case err != nil:
		return h.c.srv.internal("backfill rule", err)
	}
	if last == nil {
		last = &omegav1.BackfillProgress{}
	}
	last.RecordsRead, last.RecordsTotal, last.Matches = rep.Records, rep.Records, rep.Matches
	last.PartitionsDone = last.GetPartitions()
	return stream.Send(&omegav1.BackfillRuleResponse{Progress: last, Report: reportMsg(rep)})
}

// backfillJob checks the request and loads the rule version; every refusal names its field.
func (h ruleService) backfillJob(ctx context.Context, m *omegav1.BackfillRuleRequest) (backfill.Job, error) {
	var job backfill.Job
	switch {
	case m.GetRuleId() == "":
		return job, invalid("rule_id", "required")
	case m.GetVersion() < 0:
		return job, invalid("version", "must not be negative")
	case m.GetSince() == nil:
		return job, invalid("since", "required: the earliest record time to replay")
	}
	if err := m.GetSince().CheckValid(); err != nil {
		return job, invalid("since", "%v", err)
	}
	if d := m.GetStartWithin(); d != nil {
		if err := d.CheckValid(); err != nil {
			return job, invalid("start_within", "%v", err)
		}
		job.StartWithin = d.AsDuration()
	}
	job.Since, job.Start, job.SampleSize = m.GetSince().AsTime(), m.GetStart(), int(m.GetSampleSize())
	// The arguments first: a bad since is refused without a database round trip.
	probe := job
	probe.Rule.ID = m.GetRuleId()
	if err := probe.Validate(time.Now()); err != nil {
		var arg *backfill.ArgError
		if errors.As(err, &arg) {
			return job, invalid(arg.Field, "%s", arg.Reason)
		}
		return job, err
	}
	r, err := h.c.load(ctx, "rule_id", m.GetRuleId(), m.GetVersion())
	if connect.CodeOf(err) == connect.CodeNotFound {
		switch {
		case m.GetVersion() != 0:
			return job, invalid("version", "rule %q has no version %d", m.GetRuleId(), m.GetVersion())
		case h.c.hasVersions(ctx, m.GetRuleId()):
			return job, invalid("version", "rule %q has no active version: name a stored one", m.GetRuleId())
		}
		return job, invalid("rule_id", "unknown rule %q", m.GetRuleId())
	}
	if err != nil {
		return job, err
	}
	job.Rule = r
	return job, nil
}

// hasVersions reports whether id has a first version stored (a rule only ever drafted has no
// active one).
func (c *specs[T]) hasVersions(ctx context.Context, id string) bool {
	_, err := c.store.Version(ctx, id, 1)
	return err == nil
}

func progressMsg(p backfill.Progress) *omegav1.BackfillProgress {
	return &omegav1.BackfillProgress{RecordsRead: p.Read, RecordsTotal: p.Total, Matches: p.Matches,
		PartitionsDone: int32(p.PartitionsDone), Partitions: int32(p.Partitions)}
}

func reportMsg(r backfill.Report) *omegav1.BackfillReport {
	out := &omegav1.BackfillReport{RuleId: r.RuleID, RuleVersion: int32(r.RuleVersion), Since: timestamppb.New(r.Since),
		Until: timestamppb.New(r.Until), Records: r.Records, Matches: r.Matches, Started: r.Started, Existing: r.Existing,
		TooOld: r.TooOld}
	if !r.StartAfter.IsZero() {
		out.StartAfter = timestamppb.New(r.StartAfter)
	}
	for _, d := range r.Days {
		out.Days = append(out.Days, &omegav1.BackfillDay{Date: d.Date, Matches: d.Matches, Started: d.Started})
	}
	for _, m := range r.Sample {
		bm := &omegav1.BackfillMatch{UserId: m.UserID, ReachId: workflows.ReachID(m.RuleID, m.UserID, m.MatchKey),
			MatchKey: m.MatchKey, EventTime: timestamppb.New(m.EventTime), EventIds: m.EventIDs}
		if len(m.Attrs) > 0 {
			bm.Attrs, _ = structpb.NewStruct(m.Attrs)
		}
		out.Sample = append(out.Sample, bm)
	}
	return out
}

// longCalls lifts the server's read and write deadlines for the calls that stream for as long as
// they run (a backfill takes minutes): the deadlines guard against slow clients on every other
// call.
func longCalls(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == omegav1connect.RuleServiceBackfillRuleProcedure {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		next.ServeHTTP(w, r)
	})
}
