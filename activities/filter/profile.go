package filter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/profile"
)

// Consent drops a send the user has not agreed to. A profile's consent maps "channel",
// "channel:category" or "*:category" to true (granted) or false (refused); a refusal at any level
// wins (unsubscribe wins). Channels in OptIn need an explicit grant (SMS marketing, typically).
// The profile is read at check time, so an unsubscribe stops a journey already running.
type Consent struct {
	Profiles profile.Source
	OptIn    []string
}

func (c *Consent) Name() string { return "consent" }

func (c *Consent) Check(ctx context.Context, r Request) (Verdict, error) {
	p, err := c.Profiles.Get(ctx, r.UserID)
	if err != nil {
		return Verdict{}, fmt.Errorf("read profile: %w", err)
	}
	cat := r.category()
	granted := false
	for _, k := range []string{r.Channel, r.Channel + ":" + cat, "*:" + cat} {
		v, set := p.Consent[k]
		if set && !v {
			return Verdict{Outcome: Drop, Reason: fmt.Sprintf("consent refused for %s", k)}, nil
		}
		granted = granted || (set && v)
	}
	if !granted && slices.Contains(c.OptIn, r.Channel) && cat != CategoryTransactional {
		return Verdict{Outcome: Drop, Reason: fmt.Sprintf("%s needs opt-in for %s messages; none given", r.Channel, cat)}, nil
	}
	return Verdict{Outcome: Pass}, nil
}

// QuietHours defers a send that would arrive inside the user's quiet window (in their time zone,
// from the profile; UTC when unknown) to the window's end: it never drops. Transactional messages
// are not held. Start and End are times of day ("21:00", or "21:00:30"); a window may span
// midnight.
type QuietHours struct {
	Profiles   profile.Source
	Start, End string
}

func (q *QuietHours) Name() string { return "quiet_hours" }

// Validate reports a window the filter cannot read.
func (q *QuietHours) Validate() error {
	for _, s := range []string{q.Start, q.End} {
		if _, err := parseClock(s); err != nil {
			return err
		}
	}
	if s, _ := parseClock(q.Start); s == mustClock(q.End) {
		return fmt.Errorf("quiet hours: start and end are both %s: a window that never opens would hold every send", q.Start)
	}
	return nil
}

func mustClock(s string) time.Duration { d, _ := parseClock(s); return d }

func (q *QuietHours) Check(ctx context.Context, r Request) (Verdict, error) {
	if r.category() == CategoryTransactional {
		return Verdict{Outcome: Pass}, nil
	}
	p, err := q.Profiles.Get(ctx, r.UserID)
	if err != nil {
		return Verdict{}, fmt.Errorf("read profile: %w", err)
	}
	until, quiet, err := QuietUntil(r.Now, q.Start, q.End, p.Location())
	if err != nil {
		return Verdict{}, err
	}
	if !quiet {
		return Verdict{Outcome: Pass}, nil
	}
	return Verdict{Outcome: Defer, Until: until,
		Reason: fmt.Sprintf("quiet hours %s-%s in %s", q.Start, q.End, p.Location())}, nil
}

// QuietUntil reports whether now falls in the daily window [start, end) in loc, and when that
// window ends. The window is read on the wall clock in loc, so DST nights behave as the user's
// clock does: a wall time that happens twice (clocks turned back) is quiet both times, each
// ending at the next time the clock reads end; a window edge the clock skips (clocks put forward)
// is passed when the clock jumps past it.
func QuietUntil(now time.Time, start, end string, loc *time.Location) (time.Time, bool, error) {
	s, err := parseClock(start)
	if err != nil {
		return time.Time{}, false, err
	}
	e, err := parseClock(end)
	if err != nil {
		return time.Time{}, false, err
	}
	l := now.In(loc)
	clock := time.Duration(l.Hour())*time.Hour + time.Duration(l.Minute())*time.Minute +
		time.Duration(l.Second())*time.Second + time.Duration(l.Nanosecond())
	endDay := 0 // the window ends today, or tomorrow (0 or 1)
	switch {
	case s < e:
		if clock < s || clock >= e {
			return time.Time{}, false, nil
		}
	case clock >= s: // spans midnight (or the whole day when start == end), before midnight
		endDay = 1
	case clock >= e: // spans midnight, outside
		return time.Time{}, false, nil
	}
	return wallAfter(now, l.Year(), l.Month(), l.Day()+endDay, e, loc), true, nil
}

// wallAfter is the first instant after now at which the clock in loc reads d on the given day;
// when the clock skips d that day (DST gap), the instant it jumps past d.
func wallAfter(now time.Time, year int, month time.Month, day int, d time.Duration, loc *time.Location) time.Time {
	want := time.Date(year, month, day, 0, 0, 0, 0, time.UTC).Add(d) // the wall time, as if in UTC
	wall := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	}
	t := time.Date(want.Year(), want.Month(), want.Day(), want.Hour(), want.Minute(), want.Second(), 0, loc)
	zoneStart, zoneEnd := t.ZoneBounds()
	switch w := wall(t); {
	case w.After(want): // skipped: time.Date normalized forward, the jump is where t's zone starts
		return zoneStart
	case w.Before(want): // skipped: time.Date normalized back, the jump is where t's zone ends
		return zoneEnd
	}
	// The clock may read d twice (clocks turned back); time.Date picks either instant.
	_, off := t.Zone()
	candidates := []time.Time{t}
	if !zoneStart.IsZero() {
		if _, prev := zoneStart.Add(-time.Nanosecond).Zone(); prev > off {
			candidates = append(candidates, t.Add(-time.Duration(prev-off)*time.Second))
		}
	}
	if !zoneEnd.IsZero() {
		if _, next := zoneEnd.Zone(); next < off {
			candidates = append(candidates, t.Add(time.Duration(off-next)*time.Second))
		}
	}
	best := time.Time{}
	for _, c := range candidates {
		if c.After(now) && wall(c).Equal(want) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if best.IsZero() {
		return t
	}
	return best
}

func parseClock(s string) (time.Duration, error) {
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second, nil
		}
	}
	return 0, fmt.Errorf("quiet hours: %q is not a time of day HH:MM", s)
}

// Gray lets a rule reach only Rollout percent of users, the same users every time (a stable hash
// of user and rule), plus the users on an allowlist (testers).
type Gray struct {
	Allowed func(ctx context.Context, userID string) (bool, error)
}

func (g *Gray) Name() string { return "gray" }

// InRollout reports whether user falls in the first percent of rule's users.
func InRollout(userID, ruleID string, percent int) bool {
	if percent <= 0 || percent >= 100 {
		return true
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(ruleID + "\x00" + userID))
	return int(h.Sum32()%100) < percent
}

func (g *Gray) Check(ctx context.Context, r Request) (Verdict, error) {
	if InRollout(r.UserID, r.RuleID, r.Rollout) {
		return Verdict{Outcome: Pass}, nil
	}
	if g.Allowed != nil {
		ok, err := g.Allowed(ctx, r.UserID)
		if err != nil {
			return Verdict{}, fmt.Errorf("read allowlist: %w", err)
		}
		if ok {
			return Verdict{Outcome: Pass}, nil
		}
	}
	return Verdict{Outcome: Drop, Reason: fmt.Sprintf("outside the %d%% gray rollout of rule %s", r.Rollout, r.RuleID)}, nil
}

func init() {
	builtin.MustRegister(Spec{
		Name:   "consent",
		Doc:    "drops what the user's profile does not consent to",
		Fields: []plugin.Field{{Env: "OMEGA_OPT_IN", Doc: "channels that need an explicit consent grant, e.g. sms"}},
		New: func(s plugin.Values, d Deps) (Filter, error) {
			return &Consent{Profiles: d.Profiles, OptIn: plugin.List(s.Get("OMEGA_OPT_IN"))}, nil
		},
	})
	builtin.MustRegister(Spec{
		Name: "quiet_hours",
		Doc:  "holds marketing sends in the user's local night until the window ends",
		Fields: []plugin.Field{{Env: "OMEGA_QUIET_HOURS", Doc: "START-END in the user's time, e.g. 21:00-08:00 (off when empty)",
			Check: func(v string) error { _, _, err := quietWindow(v); return err }}},
		New: func(s plugin.Values, d Deps) (Filter, error) {
			v := s.Get("OMEGA_QUIET_HOURS")
			if v == "" {
				return nil, nil // not enabled: chains run without it
			}
			start, end, err := quietWindow(v)
			if err != nil {
				return nil, fmt.Errorf("OMEGA_QUIET_HOURS: %w", err)
			}
			q := &QuietHours{Profiles: d.Profiles, Start: start, End: end}
			if err := q.Validate(); err != nil {
				return nil, err
			}
			return q, nil
		},
	})
	builtin.MustRegister(Spec{
		Name: "gray",
		Doc:  "a rule's gray rollout: a stable share of users, plus the whitelist",
		New: func(_ plugin.Values, d Deps) (Filter, error) {
			if d.Lists == nil {
				return nil, errors.New("the lists are required")
			}
			return &Gray{Allowed: func(ctx context.Context, user string) (bool, error) {
				return d.Lists.Has(ctx, "whitelist", user)
			}}, nil
		},
	})
}

func quietWindow(v string) (start, end string, err error) {
	start, end, ok := strings.Cut(v, "-")
	if !ok {
		return "", "", errors.New("want START-END in the user's time (21:00-08:00)")
	}
	return start, end, nil
}
