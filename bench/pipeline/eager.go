package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/omegareach/omega/activities/plugin"

	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// Eager workflow start: when the client that starts a workflow has a worker for its task queue in
// the same process, the start's response carries the first workflow task, so no matching-service
// round trip (add task, poll, dispatch) happens before the workflow runs. Omega's CEP stage and
// worker are separate processes, so the benchmark measures what running a worker inside the
// starter would buy: Omega's worker (worker.New, the real activities) in this process, and a
// starter beside it starting the cart-add single-send reach as the CEP stage does
// (workflows.StartOptions, workflows.NewReachInput), with and without EnableEagerStart.

// eagerRun is one variant's measurement.
type eagerRun struct {
	eager      bool
	rate       float64 // reaches/s offered
	started    int
	accepted   int64     // starts whose response carried the first workflow task
	closeLat   latencies // start call to the run's close (Temporal's close time)
	sendLat    latencies // start call to the message at the provider
	window     time.Duration
	winReaches int
	cpu        map[string]float64
}

// perReach is a process's CPU (ms) per reach delivered in the steady window, net of its idle CPU
// when idle is given.
func (e eagerRun) perReach(k string, idle ...map[string]float64) float64 {
	if e.winReaches == 0 {
		return 0
	}
	c := e.cpu[k]
	if len(idle) > 0 {
		c -= idle[0][k]
	}
	return c * e.window.Seconds() / float64(e.winReaches) * 1000
}

func (b *bench) eagerPhase(rate float64) []eagerRun {
	queue := b.c.run + "-eager"
	stop := b.inProcessWorker(queue, "eager")
	defer stop()
	var out []eagerRun
	for _, eager := range []bool{false, true} {
		out = append(out, b.eagerRun(queue, rate, eager))
	}
	return out
}

// inProcessWorker starts Omega's worker (worker.New, the real activities, as `omega worker` wires
// them) in this process on queue, on the benchmark's Temporal client.
func (b *bench) inProcessWorker(queue, name string) (stop func()) {
	f, err := os.Create(filepath.Join(b.logDir(), "bench-"+name+"-worker.log"))
	must(err)
	pool := b.pool
	w, err := worker.New(worker.Config{Temporal: b.tc, TaskQueue: queue, Identity: "bench-" + name + "@" + queue, Redis: b.rdb,
		Audit:     audit.NewStore(pool),
		Settings:  plugin.Values{"OMEGA_WEBHOOK_URL": b.recv.url, "OMEGA_WEBHOOK_ALLOW": "127.0.0.0/8", "OMEGA_DAILY_CAP": "100"},
		KeyPrefix: b.c.run, Journeys: journey.NewStore(pool, worker.Catalog()),
		Profiles: &profile.Cached{Store: profile.NewStore(pool), Redis: b.rdb}, Log: slog.New(slog.NewTextHandler(f, nil))})
	must(err)
	must(w.Start())
	return func() { w.Stop(); f.Close() }
}

// reachMatch is the cart-add rule's match for user's cart_add due at at, as the CEP stage makes it.
func reachMatch(user string, at time.Time) workflows.Match {
	return workflows.Match{RuleID: ruleCartAdd, RuleVersion: 1, CorrelationKey: user, UserID: user,
		JourneyID: "cart-reminder", MatchKey: user + "-add", EventIDs: []string{user + "-add"}, EventType: "cart_add",
		ItemID: "sku-1", EventTime: at, MatchedAt: time.Now(), ReceivedAt: at}
}

// reachOptions are the CEP stage's start options for user's cart-add reach on queue.
func reachOptions(queue, user string, eager bool) client.StartWorkflowOptions {
	opts := workflows.StartOptions(reachMatch(user, time.Time{}), queue)
	opts.EnableEagerStart = eager
	return opts
}

func (b *bench) eagerRun(queue string, rate float64, eager bool) eagerRun {
	b.waitIdle()
	secs := b.c.eagerSecs
	name := map[bool]string{false: "eager-off", true: "eager-on"}[eager]
	progress("%s: %.1f reaches/s for %ds from a starter beside the worker", name, rate, secs)
	e := eagerRun{eager: eager, rate: rate, cpu: map[string]float64{}}
	accepted0 := b.eagerStarts.Load()
	type job struct {
		user string
		due  time.Time
	}
	jobs := make(chan job, 1<<16)
	var (
		mu     sync.Mutex
		called = map[string]time.Time{} // user -> when the start was called
	)
	var wg sync.WaitGroup
	for range 32 { // the CEP stage's start concurrency per partition
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := b.tc.ExecuteWorkflow(ctx, reachOptions(queue, j.user, eager), workflows.ReachWorkflow, workflows.NewReachInput(reachMatch(j.user, j.due)))
				cancel()
				if err != nil {
					progress("%s: start: %v", name, err)
					continue
				}
				mu.Lock()
				called[j.user] = t0
				mu.Unlock()
			}
		}()
	}
	win := b.windowAfter(time.Duration(min(b.c.warmSecs, secs/3))*time.Second, secs)
	total := int(rate * float64(secs))
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		time.Sleep(time.Until(at))
		jobs <- job{user: fmt.Sprintf("%s-%s-c%d", b.c.run, name, i), due: at}
	}
	close(jobs)
	wg.Wait()
	wdw := <-win
	e.window = wdw.to.Sub(wdw.from)
	for k, v := range wdw.cpu1 {
		if v0, ok := wdw.cpu0[k]; ok {
			e.cpu[k] = (v.cpu - v0.cpu).Seconds() / e.window.Seconds()
		}
	}
	addOthers(e.cpu)
	e.started = len(called)
	e.accepted = b.eagerStarts.Load() - accepted0
	due := map[string]time.Time{}
	for u := range called {
		due[ruleCartAdd+"/"+u] = called[u]
	}
	deadline := time.Now().Add(b.c.drain)
	for time.Now().Before(deadline) && b.recv.count(due) < len(due) {
		time.Sleep(100 * time.Millisecond)
	}
	for u, t0 := range called {
		got, ok := b.recv.arrival(ruleCartAdd + "/" + u)
		if !ok {
			continue
		}
		e.sendLat = append(e.sendLat, got.Sub(t0))
		if !got.Before(wdw.from) && !got.After(wdw.to) {
			e.winReaches++
		}
	}
	// Temporal's close time of each run, after the load (the reads cost the server CPU).
	for u, t0 := range called {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := b.tc.DescribeWorkflowExecution(ctx, workflows.ReachID(ruleCartAdd, u, u+"-add"), "")
		cancel()
		if err != nil || d.GetWorkflowExecutionInfo().GetCloseTime() == nil {
			continue
		}
		e.closeLat = append(e.closeLat, d.GetWorkflowExecutionInfo().GetCloseTime().AsTime().Sub(t0))
	}
	slices.Sort(e.sendLat)
	slices.Sort(e.closeLat)
	progress("%s: %d started, %d eager; start to close p50 %s p99 %s (n=%d); start to provider p50 %s p99 %s; Temporal %.1f ms CPU per reach; others %.2f cores",
		name, e.started, e.accepted, e.closeLat.p(0.5), e.closeLat.p(0.99), len(e.closeLat), e.sendLat.p(0.5), e.sendLat.p(0.99), e.perReach("temporal"), e.cpu[otherProc])
	return e
}
