package filter_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/store"
)

var day = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func capRequest(user, key string) filter.Request {
	return filter.Request{UserID: user, DispatchKey: key, Now: day, Channel: "webhook"}
}

func TestBlacklist(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			key := testenv.Unique("test:blacklist:")
			t.Cleanup(func() { rdb.Del(context.Background(), key) })
			banned := testenv.Unique("u")
			require.NoError(t, rdb.SAdd(ctx, key, banned).Err())
			bl := filter.NewBlacklist(store.NewLists(nil, rdb, map[string]string{"blacklist": key}))

			tests := []struct {
				name string
				user string
				want filter.Verdict
			}{
				{name: "listed user dropped", user: banned, want: filter.Verdict{Outcome: filter.Drop, Reason: "user is on the blacklist"}},
				{name: "other user passes", user: testenv.Unique("u"), want: filter.Verdict{Outcome: filter.Pass}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := bl.Check(ctx, filter.Request{UserID: tt.user})
					require.NoError(t, err)
					require.Equal(t, tt.want, got)
				})
			}

			// In a chain, the verdict names the filter.
			v, err := filter.Chain{bl}.Check(ctx, filter.Request{UserID: banned})
			require.NoError(t, err)
			require.Equal(t, "blacklist", v.Filter)
		})
	}
}

func TestFatigueAllChannels(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			dc := filter.NewFatigue(rdb, testenv.Unique("t"), 3, nil)
			user := testenv.Unique("u")

			var passed []string
			for i := range 5 {
				key := fmt.Sprintf("reach/r/%s/e%d/send/webhook", user, i)
				v, err := dc.Check(ctx, capRequest(user, key))
				require.NoError(t, err)
				if v.Outcome == filter.Pass {
					passed = append(passed, key)
				} else {
					require.Equal(t, filter.Drop, v.Outcome)
					require.Equal(t, "fatigue: 3 messages in 24h across all journeys", v.Reason)
				}
			}
			require.Len(t, passed, 3)

			// A retried check of a send that holds a slot passes and takes no second slot.
			v, err := dc.Check(ctx, capRequest(user, passed[0]))
			require.NoError(t, err)
			require.Equal(t, filter.Pass, v.Outcome)
			v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/new/send/webhook"))
			require.NoError(t, err)
			require.Equal(t, filter.Drop, v.Outcome, "the retry must not have freed or taken a slot")

			// Another user has a cap of its own; the window slides: a day later the slots are free.
			v, err = dc.Check(ctx, capRequest(testenv.Unique("u"), "k"))
			require.NoError(t, err)
			require.Equal(t, filter.Pass, v.Outcome)

			// Release frees a slot for another send.
			require.NoError(t, dc.Release(ctx, capRequest(user, passed[1])))
			v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/after-release/send/webhook"))
			require.NoError(t, err)
			require.Equal(t, filter.Pass, v.Outcome)
			v, err = dc.Check(ctx, capRequest(user, "reach/r/"+user+"/one-more/send/webhook"))
			require.NoError(t, err)
			require.Equal(t, filter.Drop, v.Outcome)

			next := capRequest(user, "reach/r/"+user+"/tomorrow/send/webhook")
			next.Now = day.Add(24 * time.Hour)
			v, err = dc.Check(ctx, next)
			require.NoError(t, err)
			require.Equal(t, filter.Pass, v.Outcome)
		})
	}
}

// Two reaches must never both take the last slot.
func TestFatigueConcurrent(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			dc := filter.NewFatigue(rdb, testenv.Unique("t"), 3, nil)
			user := testenv.Unique("u")

			const n = 50
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				passes int
				errs   []error
			)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					v, err := dc.Check(ctx, capRequest(user, fmt.Sprintf("reach/r/%s/e%d/send/webhook", user, i)))
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					if v.Outcome == filter.Pass {
						passes++
					}
				})
			}
			close(start)
			wg.Wait()
			require.Empty(t, errs)
			require.Equal(t, 3, passes)
		})
	}
}

func TestFatiguePerChannelAndPriority(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			f := filter.NewFatigue(rdb, testenv.Unique("t"), 3, map[string]int{"sms": 1})
			f.LastSlotPriority = 10
			user := testenv.Unique("u")
			req := func(key, ch string, prio int, at time.Duration) filter.Request {
				return filter.Request{UserID: user, DispatchKey: key, Channel: ch, Priority: prio, Now: day.Add(at)}
			}
			check := func(r filter.Request) filter.Verdict {
				v, err := f.Check(ctx, r)
				require.NoError(t, err)
				return v
			}
			// SMS: one a day, and that one is the last slot: a low-priority journey cannot take it.
			v := check(req("a", "sms", 0, 0))
			require.Equal(t, filter.Drop, v.Outcome)
			require.Contains(t, v.Reason, "fatigue: 1 sms messages in 24h (the last slot is kept for priority 10+")
			require.Equal(t, filter.Pass, check(req("b", "sms", 10, 0)).Outcome)
			require.Equal(t, filter.Drop, check(req("c", "sms", 10, time.Minute)).Outcome, "the sms cap is used")
			// Across channels: 3 in all, the third only for priority 10+.
			require.Equal(t, filter.Pass, check(req("d", "push", 0, time.Minute)).Outcome)
			v = check(req("e", "push", 0, 2*time.Minute))
			require.Equal(t, filter.Drop, v.Outcome, "the last of 3 is kept for priority 10+")
			require.Contains(t, v.Reason, "across all journeys")
			require.Equal(t, filter.Pass, check(req("f", "push", 10, 3*time.Minute)).Outcome)
			require.Equal(t, filter.Drop, check(req("g", "push", 99, 4*time.Minute)).Outcome)
			// The window slides: 24h after the first sends, their slots are free again.
			require.Equal(t, filter.Pass, check(req("h", "sms", 10, 24*time.Hour+time.Second)).Outcome)
		})
	}
}

// Two journeys compete for the last fatigue slot of 500 users: each user gets exactly one.
func TestFatigueLastSlotRace(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			rdb := target.Client
			ctx := context.Background()
			f := filter.NewFatigue(rdb, testenv.Unique("t"), 3, nil)
			const users = 500
			prefix := testenv.Unique("u")
			for i := range users {
				for j := range 2 {
					v, err := f.Check(ctx, filter.Request{UserID: fmt.Sprintf("%s-%d", prefix, i), DispatchKey: fmt.Sprintf("old%d", j), Channel: "push", Now: day})
					require.NoError(t, err)
					require.Equal(t, filter.Pass, v.Outcome)
				}
			}
			passes := make([]int, users)
			var mu sync.Mutex
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range users {
				for _, journey := range []string{"promo", "cart"} {
					wg.Go(func() {
						<-start
						v, err := f.Check(ctx, filter.Request{UserID: fmt.Sprintf("%s-%d", prefix, i), DispatchKey: journey, Channel: "push", Now: day.Add(time.Minute)})
						if err != nil {
							t.Error(err)
							return
						}
						if v.Outcome == filter.Pass {
							mu.Lock()
							passes[i]++
							mu.Unlock()
						}
					})
				}
			}
			close(start)
			wg.Wait()
			for i, n := range passes {
				require.Equal(t, 1, n, "user %d", i)
			}
		})
	}
}
