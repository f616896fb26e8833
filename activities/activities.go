package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/audit"
)

// Error types workflows test for; a permanent failure is not retried.
const (
	ErrTypeUnknownJourney    = "UnknownJourney"
	ErrTypeUnknownChannel    = "UnknownChannel"
	ErrTypeTemplate          = "TemplateError"
	ErrTypePermanentDispatch = "PermanentDispatchError"
	ErrTypeRetryableDispatch = "RetryableDispatchError"
)

// Activities holds the clients the reach activities use. Build it once in the worker and register
// the value; workflows call its methods through a nil *Activities.
type Activities struct {
	Journeys *Catalog
	Chain    filter.Chain
	Channels *channel.Registry
	Audit    *audit.Store
	Log      *slog.Logger
}

// RouteInput names the journey a match is routed to and the fields its templates read.
type RouteInput struct {
	JourneyID string         `json:"journey_id"`
	Fields    map[string]any `json:"fields"`
}

// RouteResult is the journey pinned for the run and the rendered materials.
type RouteResult struct {
	JourneyID      string `json:"journey_id"`
	JourneyVersion int    `json:"journey_version"`
	Channel        string `json:"channel"`
	TemplateID     string `json:"template_id"`
	Title          string `json:"title"`
	Body           string `json:"body"`
}

// Route resolves the journey and renders its message.
func (a *Activities) Route(_ context.Context, in RouteInput) (RouteResult, error) {
	j, ok := a.Journeys.journeys[in.JourneyID]
	if !ok {
		return RouteResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no journey %q", in.JourneyID), ErrTypeUnknownJourney, nil)
	}
	title, err := render(j.title, in.Fields)
	if err == nil {
		var body string
		body, err = render(j.body, in.Fields)
		if err == nil {
			return RouteResult{JourneyID: j.ID, JourneyVersion: j.Version, Channel: j.Channel,
				TemplateID: j.Template.ID, Title: title, Body: body}, nil
		}
	}
	return RouteResult{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("render template %q: %v", j.Template.ID, err), ErrTypeTemplate, err)
}

// Filter runs the filter chain. The verdict is the result; an error means a filter's store could
// not answer and the check is retried.
func (a *Activities) Filter(ctx context.Context, r filter.Request) (filter.Verdict, error) {
	return a.Chain.Check(ctx, r)
}

// Release gives back what the filter chain reserved for a send that will not happen.
func (a *Activities) Release(ctx context.Context, r filter.Request) error {
	return a.Chain.Release(ctx, r)
}

// DispatchInput is one send.
type DispatchInput struct {
	Channel string          `json:"channel"`
	Message channel.Message `json:"message"`
}

// Dispatch sends on the named channel. The message's idempotency key makes a retry after an
// accepted but unacknowledged send a no-op at the provider.
func (a *Activities) Dispatch(ctx context.Context, in DispatchInput) (channel.Result, error) {
	ch, ok := a.Channels.Get(in.Channel)
	if !ok {
		return channel.Result{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no channel %q", in.Channel), ErrTypeUnknownChannel, nil)
	}
	res, err := ch.Send(ctx, in.Message)
	if err == nil {
		return res, nil
	}
	if channel.IsPermanent(err) {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypePermanentDispatch, err)
	}
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
	_, err := a.Audit.Append(ctx, recs...)
	return err
}
