package cep

import (
	"context"
	"slices"
	"time"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// A join trigger (an item's price drop) with at most a page of users (fanPageSize) matches them in
// its batch (snapshotLinks). One may reach a hundred thousand users. Starting them all
// inside the trigger's batch would hold the item's partition for minutes; instead the trigger
// becomes a fan-out job in the partition's state: a snapshot of its linked users in Redis and a
// cursor. After every batch (and on an idle partition) the stage starts the next slice of users,
// for at most Config.FanOutSlice, then commits the cursor with the rest of the state. A crash
// replays at most one slice, whose starts collapse on their workflow IDs, so every user is reached
// once and the partition never waits more than a slice.

// fanPageSize is how many users one read of a snapshot returns, and the most a slice starts
// past its deadline (a slice always starts one page, so every slice makes progress).
const fanPageSize = 100

// fanSnapshotTTL bounds how long a fan-out snapshot may wait for its job to finish.
const fanSnapshotTTL = 7 * 24 * time.Hour

// fanJob is a trigger whose users a snapshot holds, read from Redis in one batch.
type fanJob struct {
	rule  *compiledRule
	ev    event.Event
	snap  string
	total int64
}

// fanState is a fan-out job as the partition's state keeps it.
type fanState struct {
	Trigger event.Event `json:"e"`
	Snap    string      `json:"s"`
	Total   int64       `json:"t"`
	Next    int64       `json:"n"`
}

// addJobs records new fan-out jobs; a trigger already known (a duplicate, or a retried batch)
// keeps its cursor.
func (m *machine) addJobs(jobs []fanJob) {
	for _, j := range jobs {
		k := instKey(j.rule, "fan", j.ev.EventID)
		if m.find(k) != 0 {
			continue
		}
		m.put(k, &instance{Fan: &fanState{Trigger: j.ev, Snap: j.snap, Total: j.total},
			Exp: ms(j.ev.TS) + msd(fanSnapshotTTL)})
	}
}

// pendingJobs returns the keys of the jobs with users left, oldest trigger first.
func (m *machine) pendingJobs() []string {
	type job struct {
		key string
		at  time.Time
	}
	var jobs []job
	for k := range m.jobs {
		if in := m.get(k); in != nil && in.Fan != nil && in.Fan.Next < in.Fan.Total {
			jobs = append(jobs, job{k, in.Fan.Trigger.TS})
		} else {
			delete(m.jobs, k)
		}
	}
	slices.SortFunc(jobs, func(a, b job) int { return a.at.Compare(b.at) })
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.key
	}
	return out
}

// fanOut starts the users of pending fan-out jobs, a page at a time, until the jobs are done or
// deadline passes; start must start (or record) every match it is given before it returns. The
// cursors move in the machine: the caller commits them.
func (p *partition) fanOut(ctx context.Context, e *engine, rules []compiledRule, deadline time.Time, now time.Time,
	start func(context.Context, []workflows.Match) error) error {
	byID := rulesByID(rules)
	pages := 0
	for _, k := range p.m.pendingJobs() {
		in := p.m.get(k)
		f := in.Fan
		r := byID[ruleOfKey(k)]
		if r == nil || instKey(r, "fan", f.Trigger.EventID) != k {
			// The rule was disabled or replaced: its fan-out ends with it.
			f.Next = f.Total
			p.m.put(k, in)
			continue
		}
		for f.Next < f.Total {
			if pages > 0 && !time.Now().Before(deadline) {
				return nil
			}
			pages++
			users, err := e.fanPage(ctx, f.Snap, f.Next, min(fanPageSize, f.Total-f.Next))
			if err != nil {
				return err
			}
			ms := make([]workflows.Match, 0, len(users))
			for _, u := range users {
				m := fanMatch(r, &f.Trigger, u, now)
				m.Bulk = true // more than a page of users: fresh reaches do not queue behind them
				ms = append(ms, m)
			}
			if ms, err = p.admit(ctx, e, rules, ms); err != nil {
				return err
			}
			if err := start(ctx, ms); err != nil {
				return err
			}
			f.Next += int64(max(len(users), 1))
			if len(users) == 0 {
				f.Next = f.Total // the snapshot expired or shrank: nothing more to read
			}
			p.m.put(k, in)
		}
		in.Exp = ms(f.Trigger.TS) + msd(lateness) // remembered a while: a duplicate trigger changes nothing
		p.m.put(k, in)
		_ = e.rdb.Del(ctx, f.Snap).Err() // best effort: it expires anyway
	}
	return nil
}
