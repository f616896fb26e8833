package activities_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
)

type profiles struct{}

func (profiles) Get(_ context.Context, userID string) (profile.Profile, error) {
	return profile.Profile{UserID: userID}, nil
}

// The global control group holds its users out of marketing journeys only.
func TestRouteHoldsOutTheControlGroup(t *testing.T) {
	send := func(category string) []journey.Step {
		return []journey.Step{{ID: "s", Send: &journey.Send{Channel: "push", Template: "t", Category: category}}}
	}
	a := &activities.Activities{
		Journeys: journey.Static{"promo": {ID: "promo", Steps: send("")}, "receipt": {ID: "receipt", Steps: send("transactional")}},
		Profiles: profiles{}, ControlGroupPercent: 5,
	}
	held, transactionalHeld := 0, 0
	for i := range 2000 {
		u := fmt.Sprintf("u%d", i)
		r, err := a.Route(context.Background(), activities.RouteInput{JourneyID: "promo", UserID: u})
		require.NoError(t, err)
		require.Equal(t, journey.InControlGroup(u, 5), r.HeldOut)
		if r.HeldOut {
			held++
		}
		r, err = a.Route(context.Background(), activities.RouteInput{JourneyID: "receipt", UserID: u})
		require.NoError(t, err)
		if r.HeldOut {
			transactionalHeld++
		}
	}
	require.InDelta(t, 100, held, 45, "about 5% of 2,000")
	require.Zero(t, transactionalHeld, "a transactional journey holds nobody out")
	a.ControlGroupPercent = 0
	for i := range 200 {
		r, err := a.Route(context.Background(), activities.RouteInput{JourneyID: "promo", UserID: fmt.Sprintf("u%d", i)})
		require.NoError(t, err)
		require.False(t, r.HeldOut, "off")
	}
}
