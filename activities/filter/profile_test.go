package filter_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without relying on the host's zoneinfo

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/profile"
)

// failingSource is a profile source whose store is down.
type failingSource struct{}

func (failingSource) Get(context.Context, string) (profile.Profile, error) {
	return profile.Profile{}, errStore
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	return loc
}

// Fixed zones name DST-night instants unambiguously (time.Date in Europe/Berlin may pick either
// of two instants for a wall time that happens twice).
var (
	cet  = time.FixedZone("CET", 1*60*60)
	cest = time.FixedZone("CEST", 2*60*60)
)

// namesKey reports whether reason names key as a whole word ("push" is not named by a reason
// about "push:marketing").
func namesKey(t *testing.T, reason, key string) {
	t.Helper()
	require.Regexp(t, `(^|\s)`+regexp.QuoteMeta(key)+`($|\s|[,.;:)])`, reason+" ")
	require.NotRegexp(t, regexp.QuoteMeta(key)+`:[a-z*]`, reason, "reason names a longer key than %q", key)
}

func TestConsent(t *testing.T) {
	tests := []struct {
		name     string
		consent  map[string]bool
		noUser   bool // the user has no profile at all
		optIn    []string
		channel  string
		category string
		want     string // outcome
		key      string // the consent key the drop reason must name
		reason   string // a fragment the drop reason must contain (when key is empty)
	}{
		{name: "refused at channel", consent: map[string]bool{"push": false}, channel: "push", want: filter.Drop, key: "push"},
		{name: "refused at channel and category", consent: map[string]bool{"push:marketing": false}, channel: "push", want: filter.Drop, key: "push:marketing"},
		{name: "refused at category on every channel", consent: map[string]bool{"*:marketing": false}, channel: "push", want: filter.Drop, key: "*:marketing"},
		{name: "channel refusal holds for transactional", consent: map[string]bool{"push": false}, channel: "push", category: filter.CategoryTransactional, want: filter.Drop, key: "push"},
		{name: "marketing refusal does not hold for transactional", consent: map[string]bool{"push:marketing": false, "*:marketing": false}, channel: "push", category: filter.CategoryTransactional, want: filter.Pass},
		{name: "refusal on another channel does not hold", consent: map[string]bool{"email": false, "email:marketing": false}, channel: "push", want: filter.Pass},
		{name: "empty category reads as marketing", consent: map[string]bool{"push:marketing": false}, channel: "push", category: "", want: filter.Drop, key: "push:marketing"},

		// Unsubscribe wins: a grant at one level does not lift a refusal at another.
		{name: "channel grant, category refusal", consent: map[string]bool{"push": true, "push:marketing": false}, channel: "push", want: filter.Drop, key: "push:marketing"},
		{name: "channel-category grant, global category refusal", consent: map[string]bool{"push:marketing": true, "*:marketing": false}, channel: "push", want: filter.Drop, key: "*:marketing"},
		{name: "global category grant, channel refusal", consent: map[string]bool{"push": false, "*:marketing": true}, channel: "push", want: filter.Drop, key: "push"},
		{name: "channel refusal, channel-category grant", consent: map[string]bool{"push": false, "push:marketing": true}, channel: "push", want: filter.Drop, key: "push"},

		// Opt-in channels need an explicit grant for anything but transactional messages.
		{name: "opt-in channel without grant drops marketing", consent: map[string]bool{}, optIn: []string{"sms"}, channel: "sms", want: filter.Drop, reason: "opt-in"},
		{name: "opt-in channel, unknown user drops marketing", noUser: true, optIn: []string{"sms"}, channel: "sms", want: filter.Drop, reason: "opt-in"},
		{name: "opt-in channel, grant elsewhere does not count", consent: map[string]bool{"push:marketing": true, "email": true}, optIn: []string{"sms"}, channel: "sms", want: filter.Drop, reason: "opt-in"},
		{name: "opt-in channel passes transactional without grant", consent: map[string]bool{}, optIn: []string{"sms"}, channel: "sms", category: filter.CategoryTransactional, want: filter.Pass},
		{name: "opt-in channel with grant passes", consent: map[string]bool{"sms:marketing": true}, optIn: []string{"sms"}, channel: "sms", want: filter.Pass},
		{name: "opt-in channel with grant but refusal drops", consent: map[string]bool{"sms:marketing": true, "*:marketing": false}, optIn: []string{"sms"}, channel: "sms", want: filter.Drop, key: "*:marketing"},
		{name: "channel not in opt-in needs no grant", consent: map[string]bool{}, optIn: []string{"sms"}, channel: "push", want: filter.Pass},

		{name: "unknown user passes", noUser: true, channel: "push", want: filter.Pass},
		{name: "profile without consent passes", consent: nil, channel: "push", want: filter.Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := profile.Static{}
			if !tt.noUser {
				src["u1"] = profile.Profile{UserID: "u1", Consent: tt.consent}
			}
			c := &filter.Consent{Profiles: src, OptIn: tt.optIn}
			require.Equal(t, "consent", c.Name())
			v, err := c.Check(context.Background(), filter.Request{UserID: "u1", Channel: tt.channel, Category: tt.category, Now: day})
			require.NoError(t, err)
			require.Equal(t, tt.want, v.Outcome, "verdict %v", v)
			require.True(t, v.Until.IsZero(), "consent never defers")
			if tt.want == filter.Pass {
				require.Empty(t, v.Reason)
				return
			}
			if tt.key != "" {
				namesKey(t, v.Reason, tt.key)
			}
			if tt.reason != "" {
				require.Contains(t, v.Reason, tt.reason)
				require.Contains(t, v.Reason, tt.channel)
			}
		})
	}

	t.Run("store error is an error, not a verdict", func(t *testing.T) {
		c := &filter.Consent{Profiles: failingSource{}, OptIn: []string{"sms"}}
		v, err := c.Check(context.Background(), filter.Request{UserID: "u1", Channel: "push", Now: day})
		require.ErrorIs(t, err, errStore)
		require.Equal(t, filter.Verdict{}, v)
	})
}

func TestQuietUntil(t *testing.T) {
	bln := berlin(t)
	at := func(y int, m time.Month, d, h, mi, s int) time.Time { return time.Date(y, m, d, h, mi, s, 0, bln) }
	tests := []struct {
		name       string
		start, end string
		now        time.Time
		quiet      bool
		until      time.Time
	}{
		// A window over midnight, in winter (CET).
		{name: "just before start", start: "21:00", end: "08:00", now: at(2026, 1, 15, 20, 59, 0)},
		{name: "last second before start", start: "21:00", end: "08:00", now: at(2026, 1, 15, 20, 59, 59).Add(999 * time.Millisecond)},
		{name: "at start defers to next morning", start: "21:00", end: "08:00", now: at(2026, 1, 15, 21, 0, 0), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},
		{name: "before midnight defers to next morning", start: "21:00", end: "08:00", now: at(2026, 1, 15, 23, 59, 59), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},
		{name: "at midnight defers to same morning", start: "21:00", end: "08:00", now: at(2026, 1, 16, 0, 0, 0), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},
		{name: "after midnight defers to same morning", start: "21:00", end: "08:00", now: at(2026, 1, 16, 3, 0, 0), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},
		{name: "last second of window", start: "21:00", end: "08:00", now: at(2026, 1, 16, 7, 59, 59), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},
		{name: "at end passes", start: "21:00", end: "08:00", now: at(2026, 1, 16, 8, 0, 0)},
		{name: "midday passes", start: "21:00", end: "08:00", now: at(2026, 1, 16, 12, 0, 0)},
		{name: "over new year", start: "21:00", end: "08:00", now: at(2026, 12, 31, 22, 30, 0), quiet: true, until: at(2027, 1, 1, 8, 0, 0)},
		{name: "over month end", start: "21:00", end: "08:00", now: at(2026, 2, 28, 21, 0, 0), quiet: true, until: at(2026, 3, 1, 8, 0, 0)},
		{name: "in summer (CEST)", start: "21:00", end: "08:00", now: at(2026, 7, 10, 21, 30, 0), quiet: true, until: time.Date(2026, 7, 11, 8, 0, 0, 0, cest)},
		// The instant is what counts, whatever zone now is given in: 20:30Z is 21:30 CET.
		{name: "now given in UTC", start: "21:00", end: "08:00", now: time.Date(2026, 1, 15, 20, 30, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 1, 16, 7, 0, 0, 0, time.UTC)},
		{name: "now given in UTC, before start locally", start: "21:00", end: "08:00", now: time.Date(2026, 1, 15, 19, 59, 0, 0, time.UTC)},

		// A window within one day.
		{name: "day window: before", start: "12:00", end: "14:00", now: at(2026, 1, 15, 11, 59, 59)},
		{name: "day window: at start", start: "12:00", end: "14:00", now: at(2026, 1, 15, 12, 0, 0), quiet: true, until: at(2026, 1, 15, 14, 0, 0)},
		{name: "day window: inside", start: "12:00", end: "14:00", now: at(2026, 1, 15, 13, 59, 0), quiet: true, until: at(2026, 1, 15, 14, 0, 0)},
		{name: "day window: at end", start: "12:00", end: "14:00", now: at(2026, 1, 15, 14, 0, 0)},
		{name: "day window: evening", start: "12:00", end: "14:00", now: at(2026, 1, 15, 22, 0, 0)},
		{name: "day window: early morning", start: "12:00", end: "14:00", now: at(2026, 1, 15, 3, 0, 0)},

		// Seconds count.
		{name: "seconds: before", start: "10:00:00", end: "10:00:05", now: at(2026, 1, 15, 9, 59, 59)},
		{name: "seconds: at start", start: "10:00:00", end: "10:00:05", now: at(2026, 1, 15, 10, 0, 0), quiet: true, until: at(2026, 1, 15, 10, 0, 5)},
		{name: "seconds: inside", start: "10:00:00", end: "10:00:05", now: at(2026, 1, 15, 10, 0, 4), quiet: true, until: at(2026, 1, 15, 10, 0, 5)},
		{name: "seconds: at end", start: "10:00:00", end: "10:00:05", now: at(2026, 1, 15, 10, 0, 5)},
		{name: "seconds: HH:MM end with seconds start", start: "21:00:30", end: "08:00", now: at(2026, 1, 15, 21, 0, 29)},
		{name: "seconds: HH:MM end with seconds start, inside", start: "21:00:30", end: "08:00", now: at(2026, 1, 15, 21, 0, 30), quiet: true, until: at(2026, 1, 16, 8, 0, 0)},

		// Spring forward: on 2026-03-29 Berlin goes from 02:00 CET (01:00Z) to 03:00 CEST.
		// Window 01:00-03:30 runs from 00:00Z to 01:30Z that night.
		{name: "spring: before window", start: "01:00", end: "03:30", now: time.Date(2026, 3, 28, 23, 59, 59, 0, time.UTC)},
		{name: "spring: at start (01:00 CET)", start: "01:00", end: "03:30", now: time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},
		{name: "spring: 01:30 CET ends at 03:30 CEST", start: "01:00", end: "03:30", now: time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 3, 29, 3, 30, 0, 0, cest)},
		{name: "spring: 03:00 CEST, just after the jump", start: "01:00", end: "03:30", now: time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},
		{name: "spring: at end (03:30 CEST)", start: "01:00", end: "03:30", now: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)},
		{name: "spring: overnight window ends 08:00 CEST", start: "21:00", end: "08:00", now: at(2026, 3, 28, 22, 0, 0), quiet: true, until: time.Date(2026, 3, 29, 6, 0, 0, 0, time.UTC)},
		// A window wholly inside the skipped hour never holds: the clock never reads 02:15-02:45.
		{name: "spring: window in the gap, before", start: "02:15", end: "02:45", now: time.Date(2026, 3, 29, 0, 59, 59, 0, time.UTC)},
		{name: "spring: window in the gap, after", start: "02:15", end: "02:45", now: time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)},
		// A window starting in the skipped hour holds from the jump: 03:15 CEST is inside 02:30-04:00.
		{name: "spring: start in the gap", start: "02:30", end: "04:00", now: time.Date(2026, 3, 29, 1, 15, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 3, 29, 4, 0, 0, 0, cest)},
		// A window ending in the skipped hour ends at the jump (03:00 CEST), not at 03:30 CEST.
		{name: "spring: end in the gap", start: "22:00", end: "02:30", now: time.Date(2026, 3, 29, 0, 45, 0, 0, time.UTC), quiet: true, until: time.Date(2026, 3, 29, 3, 0, 0, 0, cest)},

		// Fall back: on 2026-10-25 Berlin goes from 03:00 CEST (01:00Z) back to 02:00 CET, so the
		// clock reads 02:00-02:30 twice: 00:00Z-00:30Z (CEST) and 01:00Z-01:30Z (CET).
		{name: "autumn: before window (01:59 CEST)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 24, 23, 59, 59, 0, time.UTC)},
		{name: "autumn: first 02:00 (CEST)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 0, 0, 0, cest), quiet: true, until: time.Date(2026, 10, 25, 2, 30, 0, 0, cest)},
		{name: "autumn: first 02:15 (CEST)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 15, 0, 0, cest), quiet: true, until: time.Date(2026, 10, 25, 2, 30, 0, 0, cest)},
		{name: "autumn: first 02:30 (CEST)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 30, 0, 0, cest)},
		{name: "autumn: 02:59 CEST", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 59, 59, 0, cest)},
		{name: "autumn: second 02:00 (CET)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 0, 0, 0, cet), quiet: true, until: time.Date(2026, 10, 25, 2, 30, 0, 0, cet)},
		{name: "autumn: second 02:15 (CET)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 15, 0, 0, cet), quiet: true, until: time.Date(2026, 10, 25, 2, 30, 0, 0, cet)},
		{name: "autumn: second 02:30 (CET)", start: "02:00", end: "02:30", now: time.Date(2026, 10, 25, 2, 30, 0, 0, cet)},
		{name: "autumn: overnight window ends 08:00 CET", start: "21:00", end: "08:00", now: at(2026, 10, 24, 22, 0, 0), quiet: true, until: time.Date(2026, 10, 25, 7, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			until, quiet, err := filter.QuietUntil(tt.now, tt.start, tt.end, bln)
			require.NoError(t, err)
			require.Equal(t, tt.quiet, quiet, "now %s (%s)", tt.now.In(bln), tt.now.UTC())
			if !tt.quiet {
				require.True(t, until.IsZero(), "until %s", until)
				return
			}
			require.True(t, until.Equal(tt.until), "until %s (%s), want %s (%s)", until.In(bln), until.UTC(), tt.until.In(bln), tt.until.UTC())
			require.True(t, until.After(tt.now), "until must be after now")
			// At until the window is over.
			_, again, err := filter.QuietUntil(until, tt.start, tt.end, bln)
			require.NoError(t, err)
			require.False(t, again, "still quiet at until %s", until.In(bln))
		})
	}

	t.Run("the same night in another zone", func(t *testing.T) {
		ny, err := time.LoadLocation("America/New_York")
		require.NoError(t, err)
		now := time.Date(2026, 1, 15, 21, 30, 0, 0, time.UTC) // 16:30 in New York: outside
		_, quiet, err := filter.QuietUntil(now, "21:00", "08:00", ny)
		require.NoError(t, err)
		require.False(t, quiet)
		until, quiet, err := filter.QuietUntil(now, "21:00", "08:00", time.UTC)
		require.NoError(t, err)
		require.True(t, quiet)
		require.True(t, until.Equal(time.Date(2026, 1, 16, 8, 0, 0, 0, time.UTC)))
	})

	for _, w := range [][2]string{{"25:00", "08:00"}, {"21:00", "24:00"}, {"9pm", "08:00"}, {"", "08:00"}, {"21:00", "08:60"}} {
		t.Run(fmt.Sprintf("bad window %q-%q", w[0], w[1]), func(t *testing.T) {
			_, _, err := filter.QuietUntil(day, w[0], w[1], bln)
			require.Error(t, err)
		})
	}
}

func TestQuietHoursCheck(t *testing.T) {
	bln := berlin(t)
	src := profile.Static{
		"berlin":  {UserID: "berlin", TimeZone: "Europe/Berlin"},
		"bad_tz":  {UserID: "bad_tz", TimeZone: "Mars/Olympus_Mons"},
		"no_zone": {UserID: "no_zone"},
	}
	q := &filter.QuietHours{Profiles: src, Start: "21:00", End: "08:00"}
	require.Equal(t, "quiet_hours", q.Name())
	require.NoError(t, q.Validate())

	late := time.Date(2026, 1, 15, 22, 0, 0, 0, time.UTC)     // 23:00 in Berlin
	evening := time.Date(2026, 1, 15, 20, 30, 0, 0, time.UTC) // 21:30 in Berlin
	tests := []struct {
		name     string
		user     string
		category string
		now      time.Time
		want     string
		until    time.Time
		zone     string // the zone the reason must name
	}{
		{name: "berlin user inside window defers", user: "berlin", now: late, want: filter.Defer, until: time.Date(2026, 1, 16, 8, 0, 0, 0, bln), zone: "Europe/Berlin"},
		{name: "berlin user at 21:30 local defers", user: "berlin", now: evening, want: filter.Defer, until: time.Date(2026, 1, 16, 8, 0, 0, 0, bln), zone: "Europe/Berlin"},
		{name: "explicit marketing defers", user: "berlin", category: filter.CategoryMarketing, now: late, want: filter.Defer, until: time.Date(2026, 1, 16, 8, 0, 0, 0, bln), zone: "Europe/Berlin"},
		{name: "transactional passes inside window", user: "berlin", category: filter.CategoryTransactional, now: late, want: filter.Pass},
		{name: "berlin user outside window passes", user: "berlin", now: time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), want: filter.Pass},
		// 20:30Z is inside the window in Berlin but not in UTC.
		{name: "user without profile uses UTC (outside)", user: "nobody", now: evening, want: filter.Pass},
		{name: "user without profile uses UTC (inside)", user: "nobody", now: late, want: filter.Defer, until: time.Date(2026, 1, 16, 8, 0, 0, 0, time.UTC), zone: "UTC"},
		{name: "profile without zone uses UTC", user: "no_zone", now: evening, want: filter.Pass},
		{name: "unknown zone uses UTC", user: "bad_tz", now: late, want: filter.Defer, until: time.Date(2026, 1, 16, 8, 0, 0, 0, time.UTC), zone: "UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := q.Check(context.Background(), filter.Request{UserID: tt.user, Channel: "push", Category: tt.category, Now: tt.now})
			require.NoError(t, err)
			require.Equal(t, tt.want, v.Outcome, "verdict %v", v)
			if tt.want == filter.Pass {
				require.True(t, v.Until.IsZero())
				return
			}
			require.True(t, v.Until.Equal(tt.until), "until %s, want %s", v.Until.UTC(), tt.until.UTC())
			require.Contains(t, v.Reason, "quiet hours")
			require.Contains(t, v.Reason, "21:00")
			require.Contains(t, v.Reason, "08:00")
			require.Contains(t, v.Reason, tt.zone)
		})
	}

	t.Run("store error is an error", func(t *testing.T) {
		q := &filter.QuietHours{Profiles: failingSource{}, Start: "21:00", End: "08:00"}
		v, err := q.Check(context.Background(), filter.Request{UserID: "u1", Channel: "push", Now: late})
		require.ErrorIs(t, err, errStore)
		require.Equal(t, filter.Verdict{}, v)
	})

	t.Run("bad window is an error", func(t *testing.T) {
		q := &filter.QuietHours{Profiles: src, Start: "25:00", End: "08:00"}
		_, err := q.Check(context.Background(), filter.Request{UserID: "berlin", Channel: "push", Now: late})
		require.Error(t, err)
	})

	t.Run("validate", func(t *testing.T) {
		for _, w := range [][2]string{{"21:00", "08:00"}, {"21:00:30", "08:00:00"}, {"00:00", "23:59:59"}, {"12:00", "14:00"}} {
			require.NoError(t, (&filter.QuietHours{Start: w[0], End: w[1]}).Validate(), "%q-%q", w[0], w[1])
		}
		for _, w := range [][2]string{{"25:00", "08:00"}, {"21:00", "25:00"}, {"21:00", ""}, {"", "08:00"}, {"9pm", "08:00"}, {"21:61", "08:00"}} {
			require.Error(t, (&filter.QuietHours{Start: w[0], End: w[1]}).Validate(), "%q-%q", w[0], w[1])
		}
	})
}

func rolloutUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	return users
}

func TestInRollout(t *testing.T) {
	users := rolloutUsers(20000)

	t.Run("0 and 100 percent let everyone in", func(t *testing.T) {
		for _, u := range users[:2000] {
			require.True(t, filter.InRollout(u, "rule-a", 0), u)
			require.True(t, filter.InRollout(u, "rule-a", 100), u)
		}
	})

	for _, pct := range []int{1, 10, 50, 90} {
		t.Run(fmt.Sprintf("%d percent is about %d percent", pct, pct), func(t *testing.T) {
			in := 0
			for _, u := range users {
				if filter.InRollout(u, "rule-a", pct) {
					in++
				}
			}
			share := 100 * float64(in) / float64(len(users))
			require.InDelta(t, float64(pct), share, 1.5, "%d of %d users in a %d%% rollout", in, len(users), pct)
		})
	}

	t.Run("stable", func(t *testing.T) {
		for _, u := range users[:2000] {
			first := filter.InRollout(u, "rule-a", 10)
			for range 3 {
				require.Equal(t, first, filter.InRollout(u, "rule-a", 10), u)
			}
		}
	})

	t.Run("widening keeps everyone already in", func(t *testing.T) {
		for _, u := range users {
			if filter.InRollout(u, "rule-a", 10) {
				require.True(t, filter.InRollout(u, "rule-a", 20), u)
			}
		}
	})

	t.Run("different rules pick different users", func(t *testing.T) {
		inA, both := 0, 0
		for _, u := range users {
			a := filter.InRollout(u, "rule-a", 10)
			if a {
				inA++
				if filter.InRollout(u, "rule-b", 10) {
					both++
				}
			}
		}
		require.NotZero(t, inA)
		require.Less(t, both, inA, "rule-b's 10%% is rule-a's 10%%")
		// Independent picks overlap in about 10% of rule-a's users.
		require.Less(t, float64(both), 0.3*float64(inA), "%d of rule-a's %d users are also in rule-b", both, inA)
	})
}

// userIn finds a user inside (or outside) rule's rollout.
func userIn(t *testing.T, rule string, pct int, inside bool) string {
	t.Helper()
	for _, u := range rolloutUsers(1000) {
		if filter.InRollout(u, rule, pct) == inside {
			return u
		}
	}
	t.Fatalf("no user %v rollout", inside)
	return ""
}

func TestGray(t *testing.T) {
	ctx := context.Background()
	inside, outside := userIn(t, "rule-a", 10, true), userIn(t, "rule-a", 10, false)
	errList := errors.New("allowlist down")
	tests := []struct {
		name    string
		user    string
		rollout int
		allowed func(context.Context, string) (bool, error)
		want    string
		err     error
		asked   bool // the allowlist must be read
	}{
		{name: "inside passes", user: inside, rollout: 10, allowed: func(context.Context, string) (bool, error) { return false, nil }, want: filter.Pass},
		{name: "inside passes without asking the allowlist", user: inside, rollout: 10, allowed: func(context.Context, string) (bool, error) { return false, errList }, want: filter.Pass},
		{name: "outside drops", user: outside, rollout: 10, allowed: func(context.Context, string) (bool, error) { return false, nil }, want: filter.Drop, asked: true},
		{name: "outside without allowlist drops", user: outside, rollout: 10, want: filter.Drop},
		{name: "outside on the allowlist passes", user: outside, rollout: 10, allowed: func(context.Context, string) (bool, error) { return true, nil }, want: filter.Pass, asked: true},
		{name: "allowlist error is an error", user: outside, rollout: 10, allowed: func(context.Context, string) (bool, error) { return true, errList }, err: errList, asked: true},
		{name: "no rollout passes everyone", user: outside, rollout: 0, want: filter.Pass},
		{name: "full rollout passes everyone", user: outside, rollout: 100, want: filter.Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			g := &filter.Gray{}
			if tt.allowed != nil {
				g.Allowed = func(ctx context.Context, user string) (bool, error) {
					asked = append(asked, user)
					return tt.allowed(ctx, user)
				}
			}
			require.Equal(t, "gray", g.Name())
			v, err := g.Check(ctx, filter.Request{UserID: tt.user, RuleID: "rule-a", Rollout: tt.rollout, Channel: "push", Now: day})
			if tt.asked {
				require.Equal(t, []string{tt.user}, asked)
			} else {
				require.Empty(t, asked)
			}
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.Equal(t, filter.Verdict{}, v)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, v.Outcome, "verdict %v", v)
			if tt.want == filter.Drop {
				require.Contains(t, v.Reason, "gray rollout")
				require.Contains(t, v.Reason, "rule-a")
				require.Contains(t, v.Reason, "10%")
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	consent := &filter.Consent{Profiles: profile.Static{}}
	quiet := &filter.QuietHours{Profiles: profile.Static{}, Start: "21:00", End: "08:00"}
	gray := &filter.Gray{}

	g := filter.NewRegistry()
	require.NoError(t, g.Register(consent, quiet))
	require.Error(t, g.Register(&filter.Consent{}), "a second consent filter")
	require.NoError(t, g.Register(gray))
	require.Error(t, filter.NewRegistry().Register(gray, &filter.Gray{}), "duplicate within one call")

	require.Error(t, g.Define("broken", "consent", "blacklist"), "unknown filter")
	_, ok := g.Chain("broken")
	require.False(t, ok, "a refused chain is not defined")

	require.NoError(t, g.Define("zeta", "gray"))
	require.NoError(t, g.Define(filter.DefaultChain, "gray", "consent", "quiet_hours"))
	require.NoError(t, g.Define("alpha", "quiet_hours"))
	require.NoError(t, g.Define("mid"))
	require.Error(t, g.Define("alpha", "consent"), "chain defined twice")

	c, ok := g.Chain("")
	require.True(t, ok)
	require.Equal(t, filter.Chain{gray, consent, quiet}, c, "the default chain, in the order given")
	d, ok := g.Chain(filter.DefaultChain)
	require.True(t, ok)
	require.Equal(t, c, d)

	a, ok := g.Chain("alpha")
	require.True(t, ok)
	require.Equal(t, filter.Chain{quiet}, a, "the redefinition was refused")

	_, ok = g.Chain("nope")
	require.False(t, ok)

	require.Equal(t, []string{"alpha", filter.DefaultChain, "mid", "zeta"}, g.Chains())
	require.Empty(t, filter.NewRegistry().Chains())

	_, ok = filter.NewRegistry().Chain("")
	require.False(t, ok, "no default chain until one is defined")
}

func TestQuietHoursRefusesAnEmptyWindow(t *testing.T) {
	q := &filter.QuietHours{Start: "22:00", End: "22:00"}
	require.ErrorContains(t, q.Validate(), "never opens")
}
