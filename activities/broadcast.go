package activities

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/omegareach/omega/audience"
	"github.com/omegareach/omega/profile"
)

// ErrTypeAudience is a broadcast's audience that does not compile: not retried.
const ErrTypeAudience = "AudienceError"

// broadcastStarters bounds a page's reach starts in flight.
const broadcastStarters = 16

// ProfilePager reads every profile a page at a time, in user ID order (profile.Store).
type ProfilePager interface {
	Page(ctx context.Context, after string, limit int) ([]profile.Profile, error)
}

// AudienceStarter starts the reach of one user of a broadcast, under the ID
// reach/audience/<audience>/<user>/<run>; created is false when that reach was started before
// (a page replayed after a crash, a broadcast restarted), which starts nothing.
type AudienceStarter interface {
	StartAudienceReach(ctx context.Context, audienceID, userID, journeyID, run string) (created bool, err error)
}

// BroadcastPageInput is one page of a broadcast: the profiles after After, at most Limit, whose
// audience members are started at Rate reaches per second at most.
type BroadcastPageInput struct {
	Audience  audience.Audience `json:"audience"`
	JourneyID string            `json:"journey_id"`
	Run       string            `json:"run"`
	After     string            `json:"after"`
	Limit     int               `json:"limit"`
	Rate      float64           `json:"rate"`
}

// BroadcastPageResult is what a page did: profiles read, members found, reaches started (and
// found started before), and the user ID the next page reads after; Done on the last page.
type BroadcastPageResult struct {
	Next    string `json:"next"`
	Scanned int64  `json:"scanned"`
	Matched int64  `json:"matched"`
	Started int64  `json:"started"`
	Already int64  `json:"already"`
	Done    bool   `json:"done"`
}

// BroadcastPage reads a page of profiles and starts the reach of every member of the audience,
// paced at the rate. A retried page starts again from its beginning: reaches started before are
// found by their IDs, so nobody is reached twice.
func (a *Activities) BroadcastPage(ctx context.Context, in BroadcastPageInput) (BroadcastPageResult, error) {
	res := BroadcastPageResult{Next: in.After}
	if a.Pages == nil || a.Reaches == nil {
		return res, temporal.NewNonRetryableApplicationError("this worker has no profile store or reach starter for broadcasts", ErrTypeAudience, nil)
	}
	cond, err := in.Audience.Compile()
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeAudience, err)
	}
	ps, err := a.Pages.Page(ctx, in.After, in.Limit)
	if err != nil {
		return res, err
	}
	// Members start in order of user ID, paced at the rate, by up to broadcastStarters calls in
	// flight: one start is a round trip to Temporal, and the rate must hold whatever it costs.
	var members []string
	for _, p := range ps {
		res.Scanned++
		res.Next = p.UserID
		if cond.Holds(p) {
			members = append(members, p.UserID)
		}
	}
	if members, err = in.Audience.OnLists(ctx, a.Lists, members); err != nil {
		return res, err
	}
	res.Matched = int64(len(members))
	interval := time.Duration(0)
	if in.Rate > 0 {
		interval = time.Duration(float64(time.Second) / in.Rate)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex
		firstErr  error
		wg        sync.WaitGroup
		sem       = make(chan struct{}, broadcastStarters)
		next      = time.Now()
		heartbeat = time.Now()
		refunds   atomic.Int64
	)
	for _, u := range members {
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		// A member found started (a killed run's) gives its slot back: the rate paces starts.
		next = next.Add(-time.Duration(refunds.Swap(0)) * interval)
		next = maxTime(next, time.Now().Add(-interval)).Add(interval) // no burst after a slow start
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			created, err := a.Reaches.StartAudienceReach(ctx, in.Audience.ID, u, in.JourneyID, in.Run)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstErr == nil:
				firstErr = errors.Join(errors.New("start the reach of "+u), err)
				cancel()
			case err != nil:
			case created:
				res.Started++
			default:
				res.Already++
				refunds.Add(1)
			}
		}()
		if time.Since(heartbeat) > time.Second {
			heartbeat = time.Now()
			activity.RecordHeartbeat(ctx, u)
		}
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Done = len(ps) < in.Limit
	return res, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
