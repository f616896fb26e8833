package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/workflows"
)

// The workflow refers to its activities through a nil pointer; so do the mocks.
var a *activities.Activities

const (
	testReachID = "reach/cart-add/u1/e1"
	testKey     = testReachID + "/send/webhook"
)

var testRoute = activities.RouteResult{Journey: demoJourney("cart-reminder"), Profile: profile.Profile{UserID: "u1"}}

func demoJourney(id string) journey.Journey {
	for _, j := range journey.Demo() {
		if j.ID == id {
			return j
		}
	}
	panic("no demo journey " + id)
}

// testInput is a new reach's input (lean, as the starters make it); the runs recorded before lean
// reaches existed replay from workflows/testdata (TestReplay).
func testInput() workflows.ReachInput {
	return workflows.NewReachInput(workflows.Match{
		RuleID: "cart-add", UserID: "u1", JourneyID: "cart-reminder", MatchKey: "e1",
		EventIDs: []string{"e1"}, EventType: "cart_add", ItemID: "i1",
		MatchedAt: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
	})
}

// harness is one test workflow environment with the activities every path may call (audit,
// release) mocked to record what they were given.
type harness struct {
	env *testsuite.TestWorkflowEnvironment

	mu       sync.Mutex
	audits   [][]audit.Record
	released []filter.Request
	started  []string // activity types, in start order
	dispatch []activities.DispatchInput
	statuses []string // ReachStatus values upserted
	upserts  int      // search-attribute upsert commands
	channels []string // Channel values upserted

	registered     []activities.RegisterInput
	unregistered   int
	maxOpenReached bool // Register refuses
	// signalledInFlight is set when the cancel signal went out while dispatch was in flight.
	signalledInFlight bool
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: testReachID})
	h := &harness{env: env}

	env.OnActivity(a.AppendAudit, mock.Anything, mock.Anything).Return(func(_ context.Context, recs []audit.Record) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.audits = append(h.audits, recs)
		return nil
	}).Maybe()
	env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(func(_ context.Context, r filter.Request) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.released = append(h.released, r)
		return nil
	}).Maybe()
	env.OnActivity(a.Register, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RegisterInput) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.registered = append(h.registered, in)
		return !h.maxOpenReached, nil
	}).Maybe()
	env.OnActivity(a.Unregister, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RegisterInput) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.unregistered++
		return nil
	}).Maybe()
	// Branch conditions are evaluated for real.
	real := &activities.Activities{}
	env.OnActivity(a.Branch, mock.Anything, mock.Anything).Return(real.Branch).Maybe()
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.started = append(h.started, info.ActivityType.Name)
	})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.upserts++
		if v, ok := sa.GetKeyword(workflows.SearchReachStatus); ok {
			h.statuses = append(h.statuses, v)
		}
		if v, ok := sa.GetKeyword(workflows.SearchChannel); ok {
			h.channels = append(h.channels, v)
		}
	}).Return()
	return h
}

// onDispatch mocks the dispatch activity, recording its input.
func (h *harness) onDispatch(res channel.Result, err error) *testsuite.MockCallWrapper {
	return h.env.OnActivity(a.Dispatch, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.DispatchInput) (channel.Result, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.dispatch = append(h.dispatch, in)
			return res, err
		})
}

func (h *harness) records() []audit.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []audit.Record
	for _, batch := range h.audits {
		out = append(out, batch...)
	}
	return out
}

// runID is the run part of an audit batch's name (run/number).
func runID(t *testing.T, batch string) string {
	t.Helper()
	run, _, ok := strings.Cut(batch, "/")
	require.True(t, ok && run != "", "batch %q names its run", batch)
	return run
}

func trail(recs []audit.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Step + ":" + r.Kind
	}
	return out
}

// hasErrType reports whether an application error of type typ is in err's chain (the workflow
// wraps the activity's error, so the first application error is not necessarily the one).
func hasErrType(err error, typ string) bool {
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return false
		}
		if appErr.Type() == typ {
			return true
		}
		err = appErr.Unwrap()
	}
	return false
}

func TestReachWorkflow(t *testing.T) {
	permanent := temporal.NewNonRetryableApplicationError("permanent: provider answered 400: bad address",
		activities.ErrTypePermanentDispatch, nil)

	tests := []struct {
		name  string
		setup func(h *harness)

		wantStatus     string
		wantErrType    string            // the workflow fails with an application error of this type
		wantTrail      []string          // step:kind of every audit record, in order
		wantReasons    map[string]string // kind -> reason of that record
		wantDispatches int               // dispatch attempts started
		wantReleases   int
		wantSignal     bool // the cancel signal went out while dispatch was in flight
		// wantAudits and wantUpserts: statements and search-attribute commands the run made (a
		// run that never blocks makes one of each); unchecked when zero.
		wantAudits, wantUpserts int
	}{
		{
			name: "pass sends once",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.MatchedBy(func(in activities.RouteInput) bool {
					return in.JourneyID == "cart-reminder" && in.UserID == "u1"
				})).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.MatchedBy(func(r filter.Request) bool {
					return r.DispatchKey == testKey && r.ReachID == testReachID && r.UserID == "u1" && r.Channel == "webhook"
				})).Return(filter.Verdict{Outcome: filter.Pass}, nil).Once()
				h.onDispatch(channel.Result{ProviderMessageID: "msg-1", Status: 200}, nil).Once()
			},
			wantStatus:     workflows.StatusSent,
			wantTrail:      []string{"match:matched", "route:routed", "send:filtered", "send:dispatched", "end:completed"},
			wantReasons:    map[string]string{audit.KindDispatched: "provider 200 msg-1"},
			wantDispatches: 1,
			wantAudits:     1, // the whole run in one workflow task: one statement, one upsert
			wantUpserts:    1,
		},
		{
			// The send in the workflow task fails in a way a retry may fix: it is retried as a
			// regular activity with the same idempotency key, and succeeds.
			name: "a send that fails in the workflow task is retried as an activity",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).Once()
				h.onDispatch(channel.Result{Status: 503}, temporal.NewApplicationError("provider unavailable", activities.ErrTypeRetryableDispatch)).Once()
				h.onDispatch(channel.Result{ProviderMessageID: "msg-2", Status: 200}, nil).Once()
			},
			wantStatus:     workflows.StatusSent,
			wantTrail:      []string{"match:matched", "route:routed", "send:filtered", "send:dispatched", "end:completed"},
			wantReasons:    map[string]string{audit.KindDispatched: "provider 200 msg-2"},
			wantDispatches: 2,
			wantAudits:     2, // the trail so far before the run waits for the activity, then the rest
			wantUpserts:    1,
		},
		{
			name: "blacklist drop suppresses",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(
					filter.Verdict{Outcome: filter.Drop, Filter: "blacklist", Reason: "user is on the blacklist"}, nil).Once()
				h.onDispatch(channel.Result{Status: 200}, nil).Maybe()
			},
			wantStatus:  workflows.StatusSuppressed,
			wantTrail:   []string{"match:matched", "route:routed", "send:filtered", "send:suppressed", "end:completed"},
			wantReasons: map[string]string{audit.KindSuppressed: "drop by blacklist: user is on the blacklist"},
		},
		{
			name: "permanent dispatch failure releases and fails",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).Once()
				h.onDispatch(channel.Result{Status: 400}, permanent)
			},
			wantStatus:     workflows.StatusFailed,
			wantTrail:      []string{"match:matched", "route:routed", "send:filtered", "send:failed", "end:completed"},
			wantDispatches: 1, // not retried
			wantReleases:   1,
		},
		{
			// A send in flight completes (the provider may accept it whatever the run does); the
			// cancel takes effect after it, and the trail says both.
			name: "cancel signal during dispatch",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).Once()
				// The send hangs; the user unsubscribes meanwhile.
				h.onDispatch(channel.Result{Status: 200}, nil).After(time.Hour)
				h.env.RegisterDelayedCallback(func() {
					h.mu.Lock()
					// The send runs in the workflow task (a local activity) and has not returned.
					h.signalledInFlight = len(h.dispatch) == 0
					h.mu.Unlock()
					h.env.SignalWorkflow(workflows.SignalCancel, workflows.CancelSignal{Reason: "user unsubscribed"})
				}, 30*time.Second)
			},
			wantStatus:     workflows.StatusCancelled,
			wantTrail:      []string{"match:matched", "route:routed", "send:filtered", "send:dispatched", "end:cancelled"},
			wantReasons:    map[string]string{audit.KindCancelled: "user unsubscribed"},
			wantDispatches: 1,
			wantReleases:   0, // the message went out: its fatigue slot stays taken
			wantSignal:     true,
		},
		{
			name: "cancel signal during the filter chain releases and keeps the reason",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil).Once()
				h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil).After(time.Hour).Once()
				h.env.RegisterDelayedCallback(func() {
					h.env.SignalWorkflow(workflows.SignalCancel, workflows.CancelSignal{Reason: "user unsubscribed"})
				}, 5*time.Second)
			},
			wantStatus:   workflows.StatusCancelled,
			wantTrail:    []string{"match:matched", "route:routed", "end:cancelled"},
			wantReasons:  map[string]string{audit.KindCancelled: "user unsubscribed"},
			wantReleases: 1,
		},
		{
			name: "unknown journey fails the run",
			setup: func(h *harness) {
				h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(activities.RouteResult{},
					temporal.NewNonRetryableApplicationError(`no journey "cart-reminder"`, activities.ErrTypeUnknownJourney, nil)).Once()
			},
			wantStatus:  workflows.StatusFailed,
			wantErrType: activities.ErrTypeUnknownJourney,
			wantTrail:   []string{"route:failed", "end:completed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)

			h.env.ExecuteWorkflow(workflows.ReachWorkflow, testInput())

			require.True(t, h.env.IsWorkflowCompleted())
			if tt.wantErrType != "" {
				err := h.env.GetWorkflowError()
				require.Error(t, err)
				require.True(t, hasErrType(err, tt.wantErrType), "want an application error of type %s in %v", tt.wantErrType, err)
			} else {
				require.NoError(t, h.env.GetWorkflowError())
				var res workflows.ReachResult
				require.NoError(t, h.env.GetWorkflowResult(&res))
				require.Equal(t, tt.wantStatus, res.Status)
				if tt.wantStatus == workflows.StatusCancelled {
					require.Equal(t, "user unsubscribed", res.Reason)
				}
			}
			h.env.AssertExpectations(t)

			recs := h.records()
			require.Equal(t, tt.wantTrail, trail(recs))
			seen := map[[2]string]bool{}
			for _, r := range recs {
				k := [2]string{r.Step, r.Kind}
				require.False(t, seen[k], "(%s, %s) audited twice", r.Step, r.Kind)
				seen[k] = true
				require.Equal(t, testReachID, r.ReachID)
				require.Equal(t, "u1", r.UserID)
				require.Equal(t, "cart-add", r.RuleID)
				require.False(t, r.At.IsZero(), "%s record has no time", r.Kind)
			}
			for kind, reason := range tt.wantReasons {
				found := false
				for _, r := range recs {
					if r.Kind == kind {
						found = true
						require.Equal(t, reason, r.Reason, "reason of %s", kind)
					}
				}
				require.True(t, found, "no %s record", kind)
			}

			h.mu.Lock()
			defer h.mu.Unlock()
			require.Equal(t, tt.wantDispatches, len(h.dispatch), "dispatch attempts")
			// Each audit write is a batch named by the run and its number, so another attempt of
			// the task writes none of it twice (audit.Store.Append).
			for n, batch := range h.audits {
				for i, r := range batch {
					require.Equal(t, fmt.Sprintf("%s/%d", runID(t, batch[0].Batch), n+1), r.Batch)
					require.Equal(t, i, r.Index)
				}
			}
			if tt.wantAudits > 0 {
				require.Len(t, h.audits, tt.wantAudits, "audit statements")
				require.Equal(t, tt.wantUpserts, h.upserts, "search-attribute upserts")
			}
			for _, in := range h.dispatch {
				require.Equal(t, "webhook", in.Channel)
				require.Equal(t, testKey, in.Message.IdempotencyKey)
				require.Equal(t, testReachID, in.Message.ReachID)
				require.Equal(t, "u1", in.Message.UserID)
				require.Equal(t, "cart_reminder_v1", in.TemplateID)
				require.Equal(t, testRoute.Journey.Templates["cart_reminder_v1"], in.Template)
				require.Equal(t, "i1", in.Fields["item_id"])
			}
			require.Equal(t, tt.wantSignal, h.signalledInFlight, "cancel signal sent while dispatch was in flight")
			require.Len(t, h.released, tt.wantReleases)
			for _, r := range h.released {
				require.Equal(t, testKey, r.DispatchKey)
			}
			require.NotEmpty(t, h.statuses)
			require.Equal(t, tt.wantStatus, h.statuses[len(h.statuses)-1], "last ReachStatus upserted")
		})
	}
}

// The dispatched record carries the idempotency key the provider saw, so the audit table's unique
// index on it backs the provider's deduplication.
func TestReachWorkflowAuditsDispatchKey(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil)
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil)
	h.onDispatch(channel.Result{ProviderMessageID: "msg-1", Status: 200}, nil)

	h.env.ExecuteWorkflow(workflows.ReachWorkflow, testInput())
	require.NoError(t, h.env.GetWorkflowError())

	var dispatched []audit.Record
	for _, r := range h.records() {
		if r.Kind == audit.KindDispatched {
			dispatched = append(dispatched, r)
		}
	}
	require.Len(t, dispatched, 1)
	require.Equal(t, testKey, dispatched[0].IdempotencyKey)
	require.Equal(t, "webhook", dispatched[0].Channel)
	require.Equal(t, "cart-reminder", dispatched[0].JourneyID)
}

// Every tracking record of a reach carries its trace ID and the rule and journey versions; the
// first says when the event was received; a permanent refusal is recorded as not retryable; the
// provider call gets the trace.
func TestReachWorkflowTracksTrace(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil)
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil)
	h.onDispatch(channel.Result{Status: 400}, temporal.NewNonRetryableApplicationError("permanent: bad address",
		activities.ErrTypePermanentDispatch, nil))

	in := testInput()
	in.Match.TraceID = "0af7651916cd43dd8448eb211c80319c"
	in.Match.RuleVersion = 3
	in.Match.ReceivedAt = time.Date(2026, 11, 24, 9, 59, 59, 0, time.UTC)
	h.env.ExecuteWorkflow(workflows.ReachWorkflow, in)
	require.NoError(t, h.env.GetWorkflowError(), "a permanent refusal fails the reach, not the run")

	recs := h.records()
	require.Equal(t, []string{"receive:received", "match:matched", "route:routed", "send:filtered", "send:failed", "end:completed"}, trail(recs))
	require.True(t, recs[0].At.Equal(in.Match.ReceivedAt))
	for _, r := range recs {
		require.Equal(t, in.Match.TraceID, r.TraceID, r.Step+":"+r.Kind)
		require.Equal(t, 3, r.RuleVersion, r.Step+":"+r.Kind)
		require.Equal(t, testRoute.Journey.Version, r.JourneyVersion, r.Step+":"+r.Kind)
	}
	require.False(t, recs[4].Retryable, "a permanent refusal")
	require.Equal(t, in.Match.TraceID, h.dispatch[0].Message.TraceID)
}

// A send that failed on retryable errors until its retries ran out is recorded as retryable.
func TestReachWorkflowRecordsRetryableFailure(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(a.Route, mock.Anything, mock.Anything).Return(testRoute, nil)
	h.env.OnActivity(a.Filter, mock.Anything, mock.Anything).Return(filter.Verdict{Outcome: filter.Pass}, nil)
	h.onDispatch(channel.Result{Status: 503}, temporal.NewApplicationError("provider answered 503", activities.ErrTypeRetryableDispatch))
	h.env.ExecuteWorkflow(workflows.ReachWorkflow, testInput())
	require.NoError(t, h.env.GetWorkflowError())
	var failed []audit.Record
	for _, r := range h.records() {
		if r.Kind == audit.KindFailed {
			failed = append(failed, r)
		}
	}
	require.Len(t, failed, 1)
	require.True(t, failed[0].Retryable, "503s until the retries ran out: a later retry could have helped")
	require.Equal(t, "provider answered 503", failed[0].Reason, "the provider's answer, not Temporal's error chain")
	require.Greater(t, len(h.dispatch), 1, "retried")
}
