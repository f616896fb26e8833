package cep

import (
	"time"

	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/workflows"
)

// joinPage is how many linked users one fan-out read returns.
const joinPage = 1000

func (e *engine) joinKey(r *compiledRule, item string) string {
	return e.prefix + ":" + tag(item) + ":r:" + r.ID + ":v" + strconv.Itoa(r.Version) + ":links"
}

// planJoin queues a link (step 0: a user's event on an item) or records a trigger (step 1: the
// item's event) whose fan-out is read after the batch's state is written, so a link and a trigger
// in one batch see each other in order.
func (e *engine) planJoin(pipe redis.Pipeliner, r *compiledRule, ev *event.Event, vars map[string]any, joins *[]joinQuery) {
	ctx := context.Background()
	if ev.ItemID == "" {
		return
	}
	k := e.joinKey(r, ev.ItemID)
	if r.steps[0].test(ev, vars) && ev.UserID != "" {
		ts := ms(ev.TS)
		pipe.ZAdd(ctx, k, redis.Z{Score: float64(ts), Member: ev.UserID})
		pipe.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ts-msd(r.LinkTTL.D()), 10))
		// Bounded: the newest MaxFanout links are kept.
		pipe.ZRemRangeByRank(ctx, k, 0, int64(-r.MaxFanout-1))
		pipe.PExpire(ctx, k, r.LinkTTL.D())
	}
	if ev.Type == "unfavorite" && ev.UserID != "" && r.steps[0].Type == "favorite" {
		pipe.ZRem(ctx, k, ev.UserID)
	}
	if r.steps[1].test(ev, vars) {
		*joins = append(*joins, joinQuery{rule: r, ev: ev})
	}
}

// fanOut reads the users linked to the trigger's item, a page at a time, each its own match keyed
// on the trigger event, so a replayed trigger collapses onto the same runs.
func (e *engine) fanOut(ctx context.Context, q joinQuery, now time.Time) ([]workflows.Match, error) {
	r, ev := q.rule, q.ev
	min := strconv.FormatInt(ms(ev.TS)-msd(r.LinkTTL.D()), 10)
	max := strconv.FormatInt(ms(ev.TS), 10)
	var out []workflows.Match
	for offset := int64(0); offset < int64(r.MaxFanout); offset += joinPage {
		users, err := e.rdb.ZRangeByScore(ctx, e.joinKey(r, ev.ItemID), &redis.ZRangeBy{
			Min: min, Max: max, Offset: offset, Count: joinPage,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("read links of %s: %w", ev.ItemID, err)
		}
		for _, u := range users {
			if len(out) >= r.MaxFanout {
				break
			}
			m := newMatch(r, ev, u, now)
			m.UserID = u
			out = append(out, m)
		}
		if len(users) < joinPage {
			break
		}
	}
	return out, nil
}
