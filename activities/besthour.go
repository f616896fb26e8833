package activities

import (
	"context"
	"time"

	"github.com/omegareach/omega/journey"
)

// OpenHistory reads when a user opened messages (audit.Store).
type OpenHistory interface {
	OpenTimes(ctx context.Context, userID string, types []string, since time.Time, limit int) ([]time.Time, error)
}

// bestHourOpens bounds the opens a best hour reads.
const bestHourOpens = 500

// BestHourInput names the user, their time zone (IANA) and the response types that count as
// opening a message.
type BestHourInput struct {
	UserID   string   `json:"user_id"`
	TimeZone string   `json:"time_zone"`
	Types    []string `json:"types"`
}

// BestHourResult is the user's best hour of day (-1: too little history) with the opens at that
// hour and the opens read.
type BestHourResult struct {
	Hour  int `json:"hour"`
	Opens int `json:"opens"`
	Read  int `json:"read"`
}

// BestHour reads the user's opens of the last journey.BestHourLookback and returns the hour of
// day, in their time zone, at which they opened most often (journey.BestHourOf).
func (a *Activities) BestHour(ctx context.Context, in BestHourInput) (BestHourResult, error) {
	if a.Opens == nil {
		return BestHourResult{Hour: -1}, nil
	}
	loc, err := time.LoadLocation(in.TimeZone)
	if err != nil || in.TimeZone == "" {
		loc = time.UTC
	}
	opens, err := a.Opens.OpenTimes(ctx, in.UserID, in.Types, time.Now().Add(-journey.BestHourLookback), bestHourOpens)
	if err != nil {
		return BestHourResult{}, err
	}
	h, n := journey.BestHourOf(opens, loc)
	return BestHourResult{Hour: h, Opens: n, Read: len(opens)}, nil
}
