package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/audience"
)

// A broadcast starts a journey for every user of an audience once: it reads the profiles a page
// at a time (never the whole table), starts each member's reach at a bounded rate under the ID
// reach/audience/<audience>/<user>/<run>, and keeps its cursor in its state, so a broadcast
// restarted (or a page retried) reaches nobody twice. Operators pause, resume and cancel it, and
// read its progress (the QueryBroadcast query, the API, the CLI).

// Broadcast signals and query.
const (
	SignalPause    = "pause"
	SignalResume   = "resume"
	QueryBroadcast = "progress"
)

// Broadcast defaults.
const (
	DefaultBroadcastRate = 20.0 // reaches started per second
	broadcastPage        = 500  // profiles read per page
	broadcastPagesPerRun = 200  // pages before the run continues as new (bounded history)
)

// BroadcastInput is a broadcast: the audience, the journey its members start, the run (part of
// every reach ID), the start rate, and, for a continued run, where it is.
type BroadcastInput struct {
	Audience  audience.Audience `json:"audience"`
	JourneyID string            `json:"journey_id"`
	Run       string            `json:"run"`
	Rate      float64           `json:"rate,omitempty"`
	PageSize  int               `json:"page_size,omitempty"`
	Progress  BroadcastProgress `json:"progress"`
	Paused    bool              `json:"paused,omitempty"`
}

// BroadcastProgress is how far a broadcast is.
type BroadcastProgress struct {
	// State is running, paused, done or cancelled.
	State     string    `json:"state"`
	JourneyID string    `json:"journey_id"`
	Cursor    string    `json:"cursor"`
	Scanned   int64     `json:"scanned"`
	Matched   int64     `json:"matched"`
	Started   int64     `json:"started"`
	Already   int64     `json:"already"`
	Began     time.Time `json:"began"`
	Updated   time.Time `json:"updated"`
}

// BroadcastID is the workflow ID of a broadcast.
func BroadcastID(audienceID, run string) string { return "broadcast/" + audienceID + "/" + run }

// BroadcastScheduleID is the ID of an audience's broadcast schedule, and BroadcastScheduledID the
// workflow ID its broadcasts get, to which Temporal appends -<fire time>: their run is
// scheduled-<fire time>.
func BroadcastScheduleID(audienceID string) string  { return "broadcast/" + audienceID }
func BroadcastScheduledID(audienceID string) string { return BroadcastID(audienceID, "scheduled") }

// AudienceRuleID is the rule ID a broadcast's reaches carry (search attribute RuleId, audit).
func AudienceRuleID(audienceID string) string { return "audience/" + audienceID }

// BroadcastWorkflow runs a broadcast to its end, a page per activity.
func BroadcastWorkflow(ctx workflow.Context, in BroadcastInput) (BroadcastProgress, error) {
	if in.Run == "" {
		// Started by a schedule: the workflow ID it gave (BroadcastScheduledID-<fire time>) names
		// the run, scheduled-<fire time>, so BroadcastID(audience, run) finds it.
		in.Run = strings.TrimPrefix(workflow.GetInfo(ctx).WorkflowExecution.ID, BroadcastID(in.Audience.ID, ""))
	}
	st := in.Progress
	st.JourneyID = in.JourneyID
	paused := in.Paused
	if st.Began.IsZero() {
		st.Began = workflow.Now(ctx)
	}
	state := func() string {
		if paused {
			return "paused"
		}
		return "running"
	}
	st.State = state()
	if err := workflow.SetQueryHandler(ctx, QueryBroadcast, func() (BroadcastProgress, error) { return st, nil }); err != nil {
		return st, err
	}
	workflow.Go(ctx, func(gctx workflow.Context) {
		pause, resume := workflow.GetSignalChannel(gctx, SignalPause), workflow.GetSignalChannel(gctx, SignalResume)
		for {
			sel := workflow.NewSelector(gctx)
			sel.AddReceive(pause, func(c workflow.ReceiveChannel, _ bool) { c.Receive(gctx, nil); paused = true })
			sel.AddReceive(resume, func(c workflow.ReceiveChannel, _ bool) { c.Receive(gctx, nil); paused = false })
			sel.Select(gctx)
			st.State = state()
		}
	})
	size := in.PageSize
	if size <= 0 {
		size = broadcastPage
	}
	rate := in.Rate
	if rate <= 0 {
		rate = DefaultBroadcastRate
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// A page at the lowest rate takes size/rate seconds; the heartbeat says it is alive.
		StartToCloseTimeout: time.Duration(float64(size)/rate*float64(time.Second)) + 5*time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	for pages := 0; ; pages++ {
		if err := workflow.Await(ctx, func() bool { return !paused }); err != nil {
			return cancelledBroadcast(ctx, st)
		}
		if pages == broadcastPagesPerRun {
			in.Progress, in.Paused = st, paused
			return st, workflow.NewContinueAsNewError(ctx, BroadcastWorkflow, in)
		}
		var page activities.BroadcastPageResult
		err := workflow.ExecuteActivity(actx, a.BroadcastPage, activities.BroadcastPageInput{Audience: in.Audience,
			JourneyID: in.JourneyID, Run: in.Run, After: st.Cursor, Limit: size, Rate: rate}).Get(ctx, &page)
		if ctx.Err() != nil {
			return cancelledBroadcast(ctx, st)
		}
		if err != nil {
			return st, fmt.Errorf("broadcast page after %q: %w", st.Cursor, err)
		}
		st.Cursor = page.Next
		st.Scanned += page.Scanned
		st.Matched += page.Matched
		st.Started += page.Started
		st.Already += page.Already
		st.Updated = workflow.Now(ctx)
		if page.Done {
			st.State = "done"
			return st, nil
		}
	}
}

func cancelledBroadcast(ctx workflow.Context, st BroadcastProgress) (BroadcastProgress, error) {
	st.State = "cancelled"
	st.Updated = workflow.Now(ctx)
	return st, nil
}

// Starter starts reaches from outside a workflow (a broadcast's pages: activities.AudienceStarter).
type Starter struct {
	Client    client.Client
	TaskQueue string
}

// StartAudienceReach starts the reach of one user of a broadcast; created is false when its ID
// was used before.
func (s Starter) StartAudienceReach(ctx context.Context, audienceID, userID, journeyID, run string) (bool, error) {
	now := time.Now().UTC()
	m := Match{RuleID: AudienceRuleID(audienceID), UserID: userID, JourneyID: journeyID, MatchKey: run, MatchedAt: now,
		Bulk: true} // an audience may be millions: fresh reaches do not wait behind it
	opts := StartOptions(m, s.TaskQueue)
	opts.StaticSummary = fmt.Sprintf("%s: audience %s → journey %s", userID, audienceID, journeyID)
	opts.StaticDetails = fmt.Sprintf("User **%s** is in audience **%s**; broadcast run %q started journey **%s**.",
		userID, audienceID, run, journeyID)
	_, err := s.Client.ExecuteWorkflow(ctx, opts, ReachWorkflow, NewReachInput(m))
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return false, nil
	}
	return err == nil, err
}
