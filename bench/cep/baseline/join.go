package baseline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/bench/cep/compiled"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// cep/join.go as of 5874283.

// joinPage is how many linked users one fan-out read returns.
const joinPage = 1000

func (e *Engine) joinKey(r *compiled.Rule, item string) string {
	return e.prefix + ":" + tag(item) + ":r:" + r.ID + ":v" + strconv.Itoa(r.Version) + ":links"
}

func (e *Engine) triggersKey(r *compiled.Rule, item string) string {
	return e.prefix + ":" + tag(item) + ":r:" + r.ID + ":v" + strconv.Itoa(r.Version) + ":triggers"
}

// lateLink is a link whose user may have missed a trigger processed before it.
type lateLink struct {
	rule *compiled.Rule
	ev   *event.Event
	cmd  *redis.StringSliceCmd
}

// planJoin queues a link (step 0: a user's event on an item) or records a trigger (step 1: the
// item's event) whose fan-out is read after the batch's state is written, so a link and a trigger
// in one batch see each other in order.
//
// Links are keyed by user and triggers by item, so they travel on different partitions and a
// trigger may be processed before a link that precedes it in event time. Triggers are therefore
// kept for the lateness bound, and a link also matches the kept triggers later than it: the join
// is exact in event time for links that arrive up to an hour late. The same (rule, user, trigger)
// found both ways is one match.
func (e *Engine) planJoin(pipe redis.Pipeliner, r *compiled.Rule, ev *event.Event, vars map[string]any, joins *[]joinQuery, late *[]lateLink) {
	ctx := context.Background()
	if ev.ItemID == "" {
		return
	}
	k := e.joinKey(r, ev.ItemID)
	if r.Steps[0].Test(ev, vars) && ev.UserID != "" {
		ts := ms(ev.TS)
		pipe.ZAdd(ctx, k, redis.Z{Score: float64(ts), Member: ev.UserID})
		pipe.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ts-msd(r.LinkTTL.D()), 10))
		// Bounded: the newest MaxFanout links are kept.
		pipe.ZRemRangeByRank(ctx, k, 0, int64(-r.MaxFanout-1))
		pipe.PExpire(ctx, k, r.LinkTTL.D())
		cmd := pipe.ZRangeByScore(ctx, e.triggersKey(r, ev.ItemID), &redis.ZRangeBy{
			Min: "(" + strconv.FormatInt(ts, 10), Max: strconv.FormatInt(ts+msd(r.LinkTTL.D()), 10),
		})
		*late = append(*late, lateLink{rule: r, ev: ev, cmd: cmd})
	}
	if ev.Type == "unfavorite" && ev.UserID != "" && r.Steps[0].Type == "favorite" {
		pipe.ZRem(ctx, k, ev.UserID)
	}
	if r.Steps[1].Test(ev, vars) {
		*joins = append(*joins, joinQuery{rule: r, ev: ev})
		tk := e.triggersKey(r, ev.ItemID)
		b, _ := json.Marshal(ev)
		ts := ms(ev.TS)
		pipe.ZAdd(ctx, tk, redis.Z{Score: float64(ts), Member: string(b)})
		pipe.ZRemRangeByScore(ctx, tk, "-inf", "("+strconv.FormatInt(ts-msd(lateness), 10))
		pipe.PExpire(ctx, tk, lateness)
	}
}

// lateMatches turns the triggers a link found into matches for the link's user.
func lateMatches(ls []lateLink, now time.Time) []workflows.Match {
	var out []workflows.Match
	for _, l := range ls {
		for _, raw := range l.cmd.Val() {
			var trig event.Event
			if json.Unmarshal([]byte(raw), &trig) != nil {
				continue
			}
			m := newMatch(l.rule, &trig, l.ev.UserID, now)
			m.UserID = l.ev.UserID
			out = append(out, m)
		}
	}
	return out
}

// fanOut reads the users linked to each trigger's item, each its own match keyed on the trigger
// event, so a replayed trigger collapses onto the same runs. The first page of every trigger is
// read in one pipelined round trip; only triggers with more links than a page read further pages.
func (e *Engine) fanOut(ctx context.Context, qs []joinQuery, now time.Time) ([]workflows.Match, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	page := func(pipe redis.Cmdable, q joinQuery, offset int64) *redis.StringSliceCmd {
		return pipe.ZRangeByScore(ctx, e.joinKey(q.rule, q.ev.ItemID), &redis.ZRangeBy{
			Min:    strconv.FormatInt(ms(q.ev.TS)-msd(q.rule.LinkTTL.D()), 10),
			Max:    strconv.FormatInt(ms(q.ev.TS), 10),
			Offset: offset, Count: joinPage,
		})
	}
	pipe := e.rdb.Pipeline()
	first := make([]*redis.StringSliceCmd, len(qs))
	for i, q := range qs {
		first[i] = page(pipe, q, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("read join links: %w", err)
	}
	var out []workflows.Match
	for i, q := range qs {
		users := first[i].Val()
		n := 0
		for offset := int64(0); ; {
			for _, u := range users {
				if n >= q.rule.MaxFanout {
					break
				}
				m := newMatch(q.rule, q.ev, u, now)
				m.UserID = u
				out = append(out, m)
				n++
			}
			offset += joinPage
			if len(users) < joinPage || n >= q.rule.MaxFanout {
				break
			}
			var err error
			if users, err = page(e.rdb, q, offset).Result(); err != nil {
				return nil, fmt.Errorf("read links of %s: %w", q.ev.ItemID, err)
			}
		}
	}
	return out, nil
}
