package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/temporal"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/openreach"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
)

// Error types workflows test for; a permanent failure is not retried.
const (
	ErrTypeUnknownJourney    = "UnknownJourney"
	ErrTypeUnknownChannel    = "UnknownChannel"
	ErrTypeTemplate          = "TemplateError"
	ErrTypeCondition         = "ConditionError"
	ErrTypeUnknownChain      = "UnknownChain"
	ErrTypePermanentDispatch = "PermanentDispatchError"
	ErrTypeRetryableDispatch = "RetryableDispatchError"
)

// Activities holds the clients the reach activities use. Build it once in the worker and register
// the value; workflows call its methods through a nil *Activities.
type Activities struct {
	Journeys journey.Source
	Profiles profile.Source
	Filters  *filter.Registry
	Channels *channel.Registry
	// Audit writes the trail, concurrent runs' records in shared statements.
	Audit *audit.Batcher
	// Opens reads the users' open history for sends at their best hour (none when nil: every
	// best-hour wait takes its fallback).
	Opens OpenHistory
	// ControlGroupPercent is the share of users (0 to 100) the global control group holds out of
	// every marketing journey (journey.InControlGroup): their reaches send nothing and are
	// audited held_out, so their conversions can be compared with the users reached.
	ControlGroupPercent float64
	// Pages and Reaches serve broadcasts (BroadcastPage): every profile a page at a time, and
	// the start of each member's reach. A worker without them fails broadcasts.
	Pages   ProfilePager
	Reaches AudienceStarter
	// Lists answer the list memberships an audience asks for (store.Lists).
	Lists audience.ListChecker
	// Redis holds the index of open reaches (under KeyPrefix) the CEP stage routes responses by.
	Redis     redis.UniversalClient
	KeyPrefix string
	Log       *slog.Logger

	conds sync.Map // CEL source -> cel.Program
}

// RouteInput names the journey a match is routed to and the user.
type RouteInput struct {
	JourneyID string `json:"journey_id"`
	UserID    string `json:"user_id"`
}

// RouteResult is the journey version the run pins for its whole life, and the user's profile;
// HeldOut when the global control group holds the user out of this (marketing) journey.
type RouteResult struct {
	Journey journey.Journey `json:"journey"`
	Profile profile.Profile `json:"profile"`
	HeldOut bool            `json:"held_out,omitempty"`
}

// Route resolves the journey's active version and reads the user's profile.
func (a *Activities) Route(ctx context.Context, in RouteInput) (RouteResult, error) {
	j, err := a.Journeys.Active(ctx, in.JourneyID)
	if errors.Is(err, journey.ErrNotFound) {
		return RouteResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnknownJourney, err)
	}
	if err != nil {
		return RouteResult{}, err
	}
	p, err := a.Profiles.Get(ctx, in.UserID)
	if err != nil {
		return RouteResult{}, err
	}
	held := j.Marketing() && journey.InControlGroup(in.UserID, a.ControlGroupPercent)
	return RouteResult{Journey: j, Profile: p, HeldOut: held}, nil
}

// RegisterInput puts a run in its user's index of open reaches.
type RegisterInput struct {
	UserID  string    `json:"user_id"`
	ReachID string    `json:"reach_id"`
	RuleID  string    `json:"rule_id"`
	Events  []string  `json:"events,omitempty"`
	MaxOpen int       `json:"max_open,omitempty"`
	Now     time.Time `json:"now"`
	// Until is when the entry goes stale unless registered again (openreach.MaxAge from Now when
	// zero).
	Until time.Time `json:"until,omitzero"`
}

// Register indexes the run so responses find it; false when the rule's bound on open runs per
// user refuses it.
func (a *Activities) Register(ctx context.Context, in RegisterInput) (bool, error) {
	return openreach.Register(ctx, a.Redis, a.KeyPrefix, in.UserID, in.ReachID,
		openreach.Entry{RuleID: in.RuleID, Events: in.Events, Until: unixOrZero(in.Until)}, in.MaxOpen, in.Now)
}

// Unregister removes the run from its user's index.
func (a *Activities) Unregister(ctx context.Context, in RegisterInput) error {
	return openreach.Unregister(ctx, a.Redis, a.KeyPrefix, in.UserID, in.ReachID)
}

// BranchInput is a branch step's conditions and what they read.
type BranchInput struct {
	Conditions []string         `json:"conditions"`
	Match      map[string]any   `json:"match"`
	Profile    map[string]any   `json:"profile"`
	Responses  []map[string]any `json:"responses"`
}

// Branch returns the index of the first condition that holds, -1 when none does. A condition that
// fails at run time (a missing attribute) does not hold.
func (a *Activities) Branch(_ context.Context, in BranchInput) (int, error) {
	vars := map[string]any{"match": in.Match, "profile": in.Profile, "responses": in.Responses}
	if vars["responses"] == nil {
		vars["responses"] = []map[string]any{}
	}
	i, err := journey.Decide(in.Conditions, vars, a.condition)
	var ce *journey.ConditionError
	if errors.As(err, &ce) {
		return 0, temporal.NewNonRetryableApplicationError(ce.Error(), ErrTypeCondition, ce.Err)
	}
	return i, err
}

func (a *Activities) condition(src string) (cel.Program, error) {
	if p, ok := a.conds.Load(src); ok {
		return p.(cel.Program), nil
	}
	p, err := journey.CompileCondition(src)
	if err != nil {
		return nil, err
	}
	a.conds.Store(src, p)
	return p, nil
}

// Filter runs the filter chain. The verdict is the result; an error means a filter's store could
// not answer and the check is retried.
func (a *Activities) Filter(ctx context.Context, r filter.Request) (filter.Verdict, error) {
	c, err := a.chain(r)
	if err != nil {
		return filter.Verdict{}, err
	}
	v, err := c.Check(profile.WithMemo(ctx), r) // the chain's filters read the profile once
	if err == nil {
		by := v.Filter
		if by == "" {
			by = "none"
		}
		metrics.FilterVerdicts.WithLabelValues(by, v.Outcome).Inc()
	}
	return v, err
}

// Release gives back what the filter chain reserved for a send that will not happen.
func (a *Activities) Release(ctx context.Context, r filter.Request) error {
	c, err := a.chain(r)
	if err != nil {
		return err
	}
	return c.Release(ctx, r)
}

func (a *Activities) chain(r filter.Request) (filter.Chain, error) {
	c, ok := a.Filters.Chain(r.Chain)
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no filter chain %q", r.Chain), ErrTypeUnknownChain, nil)
	}
	return c, nil
}

// DispatchInput is one send: the template (pinned with the journey's version) and the fields it
// renders over, and the message's addressing.
type DispatchInput struct {
	Channel    string           `json:"channel"`
	TemplateID string           `json:"template_id"`
	Template   journey.Template `json:"template"`
	Fields     map[string]any   `json:"fields,omitempty"`
	Message    channel.Message  `json:"message"`
	// MatchedAt is set on a run's first send, for the match-to-dispatch latency.
	MatchedAt time.Time `json:"matched_at,omitzero"`
}

// Dispatch renders the template and sends it on the named channel, unless the send ledger
// (sent.go) holds the send already: a dispatch run again after its process died returns the
// recorded result. The message's idempotency key also reaches the provider, for those that
// deduplicate.
func (a *Activities) Dispatch(ctx context.Context, in DispatchInput) (channel.Result, error) {
	ch, ok := a.Channels.Get(in.Channel)
	if !ok {
		return channel.Result{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no channel %q", in.Channel), ErrTypeUnknownChannel, nil)
	}
	m := in.Message
	if res, ok, err := a.alreadySent(ctx, m); err != nil {
		return channel.Result{}, err // nothing sent: the step is retried
	} else if ok {
		metrics.Sends.WithLabelValues(in.Channel, "already_sent").Inc()
		return res, nil
	}
	p, err := a.Profiles.Get(ctx, m.UserID) // addresses as of now, not as of the run's start
	if err != nil {
		return channel.Result{}, fmt.Errorf("read profile: %w", err)
	}
	m.To = p.Addresses
	if m.Title, m.Body, err = in.Template.Render(p.Locale, in.Fields); err != nil {
		return channel.Result{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("render template %q: %v", in.TemplateID, err), ErrTypeTemplate, err)
	}
	m.Template, m.Channel = in.TemplateID, in.Channel
	res, err := ch.Send(ctx, m)
	if err == nil {
		a.recordSent(ctx, m, res)
		metrics.Sends.WithLabelValues(in.Channel, "sent").Inc()
		if !in.MatchedAt.IsZero() {
			metrics.MatchToDispatch.WithLabelValues(in.Channel).Observe(time.Since(in.MatchedAt).Seconds())
		}
		return res, nil
	}
	if channel.IsPermanent(err) {
		metrics.Sends.WithLabelValues(in.Channel, "permanent").Inc()
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypePermanentDispatch, err)
	}
	metrics.Sends.WithLabelValues(in.Channel, "retryable").Inc()
	var opts temporal.ApplicationErrorOptions
	var re *channel.RetryableError
	if errors.As(err, &re) && re.RetryAfter > 0 {
		opts.NextRetryDelay = min(re.RetryAfter, 10*time.Minute)
	}
	opts.Cause = err
	return res, temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeRetryableDispatch, opts)
}

// AppendAudit writes audit records; records already written are skipped.
func (a *Activities) AppendAudit(ctx context.Context, recs []audit.Record) error {
	return a.Audit.Append(ctx, recs...)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
