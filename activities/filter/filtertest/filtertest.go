// Package filtertest is the conformance suite every filter passes, as channeltest is for
// channels: a send it lets through passes without a reason; one it stops is dropped with a reason,
// or deferred with a reason to a time after the request's; asking again for the same send (a
// retried activity) gives the same verdict; and a filter whose backend fails returns an error,
// never a verdict, so a lost Redis or profile store can never let a send through.
package filtertest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
)

// Case is a request and the outcome the filter must give it. Cases run in order: a filter that
// reserves (fatigue) sees the earlier cases' reservations.
type Case struct {
	Name    string
	Request filter.Request
	Want    string // filter.Pass, filter.Drop or filter.Defer
	// Decided marks a request the filter answers without reading its backend (a transactional
	// message past quiet hours, a user inside a rollout): the broken filter may answer it.
	Decided bool
}

// Run checks f against cases, then broken (the same filter built on backends that fail) against
// every case that needs its backend.
func Run(t *testing.T, f, broken filter.Filter, cases []Case) {
	t.Helper()
	ctx := context.Background()
	require.NotEmpty(t, f.Name(), "a filter has a name chains can list")
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			v, err := f.Check(ctx, c.Request)
			require.NoError(t, err)
			require.Equal(t, c.Want, v.Outcome, "verdict %+v", v)
			switch v.Outcome {
			case filter.Pass:
				require.Empty(t, v.Reason, "a pass needs no reason")
				require.True(t, v.Until.IsZero(), "a pass holds nothing")
			case filter.Drop:
				require.NotEmpty(t, v.Reason, "a drop says why: it is audited")
			case filter.Defer:
				require.NotEmpty(t, v.Reason, "a defer says why: it is audited")
				require.True(t, v.Until.After(c.Request.Now), "a defer names a later time, got %s", v.Until)
			default:
				t.Fatalf("outcome %q is none of pass, drop, defer", v.Outcome)
			}
			again, err := f.Check(ctx, c.Request)
			require.NoError(t, err)
			require.Equal(t, v, again, "the same send asked again (a retried check) gets the same verdict")
		})
	}
	if broken == nil {
		return
	}
	t.Run("a failing backend is an error, never a verdict", func(t *testing.T) {
		for _, c := range cases {
			if c.Decided {
				continue
			}
			v, err := broken.Check(ctx, c.Request)
			require.Error(t, err, "%s: got %+v", c.Name, v)
		}
	})
}
