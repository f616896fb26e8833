package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/workflows"
)

// ProfilePager reads every profile a page at a time (profile.Store).
type ProfilePager interface {
	Page(ctx context.Context, after string, limit int) ([]profile.Profile, error)
}

// audienceService serves AudienceService: dry runs over the profiles, and broadcasts as Temporal
// workflows (workflows.BroadcastWorkflow) run by the workers.
type audienceService struct {
	*server
	pages ProfilePager
	lists store.Lists // may be nil: then an audience may name no list
}

const (
	maxBroadcastRate = 1000
	maxSample        = 100
	countPage        = 1000
)

// compileAudience checks an audience, naming the field.
func (s audienceService) compileAudience(a *omegav1.Audience) (audience.Audience, *audience.Condition, error) {
	if a == nil {
		return audience.Audience{}, nil, invalid("audience", "required")
	}
	au := audience.Audience{ID: a.GetId(), When: a.GetWhen(), Lists: a.GetLists()}
	for i, l := range au.Lists {
		var known []string
		if s.lists != nil {
			known = s.lists.Names()
		}
		if !slices.Contains(known, l) {
			return au, nil, invalid(fmt.Sprintf("audience.lists[%d]", i), "unknown list %q (known: %s)", l, strings.Join(known, ", "))
		}
	}
	c, err := au.Compile()
	var fe *audience.FieldError
	if errors.As(err, &fe) {
		return au, nil, invalid("audience."+fe.Field, "%s", fe.Msg)
	}
	return au, c, err
}

func (s audienceService) CountAudience(ctx context.Context, req *connect.Request[omegav1.CountAudienceRequest]) (*connect.Response[omegav1.CountAudienceResponse], error) {
	au, c, err := s.compileAudience(req.Msg.GetAudience())
	if err != nil {
		return nil, err
	}
	n := int(req.Msg.GetSample())
	switch {
	case n < 0 || n > maxSample:
		return nil, invalid("sample", "from 0 to %d", maxSample)
	case n == 0:
		n = 10
	}
	out := &omegav1.CountAudienceResponse{}
	after := ""
	for {
		ps, err := s.pages.Page(ctx, after, countPage)
		if err != nil {
			return nil, s.internal("read profiles", err)
		}
		var held []string
		for _, p := range ps {
			out.Scanned++
			if c.Holds(p) {
				held = append(held, p.UserID)
			}
			after = p.UserID
		}
		members, err := au.OnLists(ctx, s.lists, held)
		if err != nil {
			return nil, s.internal("read lists", err)
		}
		out.Members += int64(len(members))
		out.Sample = append(out.Sample, members[:min(len(members), n-len(out.Sample))]...)
		if len(ps) < countPage {
			return connect.NewResponse(out), nil
		}
	}
}

// checkBroadcast checks what a broadcast (or a schedule of them) is given, naming the field.
func (s audienceService) checkBroadcast(a *omegav1.Audience, journeyID string, rate float64) (audience.Audience, error) {
	au, _, err := s.compileAudience(a)
	switch {
	case err != nil:
		return au, err
	case journeyID == "":
		return au, invalid("journey_id", "required")
	case !s.journeys(journeyID):
		return au, invalid("journey_id", "no active journey %q (unknown, or disabled: omega journeys list)", journeyID)
	case rate < 0 || rate > maxBroadcastRate:
		return au, invalid("rate", "reaches per second, from 0 (the default, %g) to %d", workflows.DefaultBroadcastRate, maxBroadcastRate)
	}
	return au, nil
}

func (s audienceService) StartBroadcast(ctx context.Context, req *connect.Request[omegav1.StartBroadcastRequest]) (*connect.Response[omegav1.StartBroadcastResponse], error) {
	m := req.Msg
	au, err := s.checkBroadcast(m.GetAudience(), m.GetJourneyId(), m.GetRate())
	if err != nil {
		return nil, err
	}
	run := m.GetRun()
	if run == "" {
		run = s.now().UTC().Format("20060102T150405Z")
	}
	if err := checkID("run", run); err != nil {
		return nil, err
	}
	id := workflows.BroadcastID(au.ID, run)
	_, err = s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: cmp.Or(s.taskQueue, workflows.TaskQueue),
		// A finished or stopped broadcast may run again: its members' reaches exist, so it
		// reaches nobody twice; a running one is the one started.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            "broadcast of audience " + au.ID + " → journey " + m.GetJourneyId() + " (run " + run + ")",
	}, workflows.BroadcastWorkflow, workflows.BroadcastInput{Audience: au, JourneyID: m.GetJourneyId(), Run: run, Rate: m.GetRate()})
	created := true
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		created, err = false, nil
	}
	if err != nil {
		return nil, s.internal("start broadcast", err)
	}
	b, err := s.broadcast(ctx, au.ID, run)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.StartBroadcastResponse{Broadcast: b, Created: created}), nil
}

func (s audienceService) GetBroadcast(ctx context.Context, req *connect.Request[omegav1.GetBroadcastRequest]) (*connect.Response[omegav1.GetBroadcastResponse], error) {
	b, err := s.broadcast(ctx, req.Msg.GetAudienceId(), req.Msg.GetRun())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.GetBroadcastResponse{Broadcast: b}), nil
}

func (s audienceService) PauseBroadcast(ctx context.Context, req *connect.Request[omegav1.PauseBroadcastRequest]) (*connect.Response[omegav1.PauseBroadcastResponse], error) {
	b, err := s.control(ctx, req.Msg.GetAudienceId(), req.Msg.GetRun(), workflows.SignalPause)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.PauseBroadcastResponse{Broadcast: b}), nil
}

func (s audienceService) ResumeBroadcast(ctx context.Context, req *connect.Request[omegav1.ResumeBroadcastRequest]) (*connect.Response[omegav1.ResumeBroadcastResponse], error) {
	b, err := s.control(ctx, req.Msg.GetAudienceId(), req.Msg.GetRun(), workflows.SignalResume)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.ResumeBroadcastResponse{Broadcast: b}), nil
}

func (s audienceService) CancelBroadcast(ctx context.Context, req *connect.Request[omegav1.CancelBroadcastRequest]) (*connect.Response[omegav1.CancelBroadcastResponse], error) {
	b, err := s.control(ctx, req.Msg.GetAudienceId(), req.Msg.GetRun(), "")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&omegav1.CancelBroadcastResponse{Broadcast: b}), nil
}

// control signals a running broadcast (or cancels it when signal is empty) and reads it.
func (s audienceService) control(ctx context.Context, audienceID, run, signal string) (*omegav1.Broadcast, error) {
	if err := refOK(audienceID, run); err != nil {
		return nil, err
	}
	id := workflows.BroadcastID(audienceID, run)
	var err error
	if signal == "" {
		err = s.temporal.CancelWorkflow(ctx, id, "")
	} else {
		err = s.temporal.SignalWorkflow(ctx, id, "", signal, nil)
	}
	if err != nil {
		return nil, s.internal("broadcast "+id, err)
	}
	return s.broadcast(ctx, audienceID, run)
}

func refOK(audienceID, run string) error {
	if err := checkID("audience_id", audienceID); err != nil {
		return err
	}
	return checkID("run", run)
}

// broadcast reads a broadcast: its progress query while it runs, its result once done.
func (s audienceService) broadcast(ctx context.Context, audienceID, run string) (*omegav1.Broadcast, error) {
	if err := refOK(audienceID, run); err != nil {
		return nil, err
	}
	id := workflows.BroadcastID(audienceID, run)
	d, err := s.temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return nil, s.internal("broadcast "+id, err)
	}
	var p workflows.BroadcastProgress
	state := ""
	switch st := d.GetWorkflowExecutionInfo().GetStatus(); st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		v, err := s.temporal.QueryWorkflow(ctx, id, "", workflows.QueryBroadcast)
		if err == nil {
			err = v.Get(&p)
		}
		if err != nil {
			return nil, s.internal("query broadcast "+id, err)
		}
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		if err := s.temporal.GetWorkflow(ctx, id, "").Get(ctx, &p); err != nil {
			return nil, s.internal("read broadcast "+id, err)
		}
	default:
		state = map[enumspb.WorkflowExecutionStatus]string{enumspb.WORKFLOW_EXECUTION_STATUS_FAILED: "failed",
			enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED: "terminated", enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED: "cancelled",
			enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT: "failed"}[st]
	}
	if state == "" {
		state = p.State
	}
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		return timestamppb.New(t)
	}
	return &omegav1.Broadcast{AudienceId: audienceID, Run: run, JourneyId: p.JourneyID, WorkflowId: id, State: state,
		Scanned: p.Scanned, Matched: p.Matched, Started: p.Started, Already: p.Already, Cursor: p.Cursor,
		Began: ts(p.Began), Updated: ts(p.Updated)}, nil
}

func (s audienceService) ScheduleBroadcast(ctx context.Context, req *connect.Request[omegav1.ScheduleBroadcastRequest]) (*connect.Response[omegav1.ScheduleBroadcastResponse], error) {
	m := req.Msg
	au, err := s.checkBroadcast(m.GetAudience(), m.GetJourneyId(), m.GetRate())
	if err != nil {
		return nil, err
	}
	if m.GetCron() == "" {
		return nil, invalid("cron", "required: a cron expression in UTC, like \"0 9 * * MON\"")
	}
	id := workflows.BroadcastScheduleID(au.ID)
	sc := s.temporal.ScheduleClient()
	spec := client.ScheduleSpec{CronExpressions: []string{m.GetCron()}}
	action := &client.ScheduleWorkflowAction{ID: workflows.BroadcastScheduledID(au.ID), Workflow: workflows.BroadcastWorkflow,
		TaskQueue: cmp.Or(s.taskQueue, workflows.TaskQueue),
		Args:      []any{workflows.BroadcastInput{Audience: au, JourneyID: m.GetJourneyId(), Rate: m.GetRate()}}}
	h, err := sc.Create(ctx, client.ScheduleOptions{ID: id, Spec: spec, Action: action,
		// A broadcast still running when the next is due: the next is skipped.
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP})
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		// The same audience again replaces its schedule's times and broadcast, in place: a
		// replacement the server refuses leaves the schedule as it was.
		h = sc.GetHandle(ctx, id)
		err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sch := in.Description.Schedule
			sch.Spec, sch.Action = &spec, action
			return &client.ScheduleUpdate{Schedule: &sch}, nil
		}})
	}
	var se *serviceerror.InvalidArgument
	if errors.As(err, &se) {
		return nil, invalid("cron", "%s", se.Error())
	}
	if err != nil {
		return nil, s.internal("schedule "+id, err)
	}
	out := &omegav1.ScheduleBroadcastResponse{ScheduleId: id}
	if d, err := h.Describe(ctx); err == nil {
		for _, t := range d.Info.NextActionTimes {
			out.Next = append(out.Next, timestamppb.New(t))
		}
	}
	return connect.NewResponse(out), nil
}

func (s audienceService) DeleteBroadcastSchedule(ctx context.Context, req *connect.Request[omegav1.DeleteBroadcastScheduleRequest]) (*connect.Response[omegav1.DeleteBroadcastScheduleResponse], error) {
	if err := checkID("audience_id", req.Msg.GetAudienceId()); err != nil {
		return nil, err
	}
	id := workflows.BroadcastScheduleID(req.Msg.GetAudienceId())
	if err := s.temporal.ScheduleClient().GetHandle(ctx, id).Delete(ctx); err != nil {
		return nil, s.internal("schedule "+id, err)
	}
	return connect.NewResponse(&omegav1.DeleteBroadcastScheduleResponse{}), nil
}
