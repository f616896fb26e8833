package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/event"
)

// The Temporal-only design: one long-lived workflow per user receives every event of the user as
// a signal (signal-with-start) and detects the patterns in workflow code. Here it counts views per
// item (the "viewed 3 times" rule) and, on a cart_add, notifies the provider once through a local
// activity. It does less than a reach (no routing, filter chain or audit), so the comparison
// favours it.

const signalEvent = "event"

// UserWorkflow is the per-user pattern detector.
func UserWorkflow(ctx workflow.Context, user string) error {
	ch := workflow.GetSignalChannel(ctx, signalEvent)
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumInterval: time.Second},
	})
	views := map[string]int{}
	notified := false
	for range 1000 {
		var ev event.Event
		ok, _ := ch.ReceiveWithTimeout(ctx, 10*time.Second, &ev)
		if !ok {
			return nil // idle: the user's run ends
		}
		switch ev.Type {
		case "view":
			views[ev.ItemID]++
		case "cart_add":
			if !notified {
				if err := workflow.ExecuteLocalActivity(lctx, notifyProvider, user).Get(ctx, nil); err != nil {
					return err
				}
				notified = true
			}
		}
	}
	return workflow.NewContinueAsNewError(ctx, UserWorkflow, user)
}

var receiverURL string

func notifyProvider(ctx context.Context, user string) error {
	body, _ := json.Marshal(map[string]string{"user_id": user})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, receiverURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("provider answered %s", resp.Status)
	}
	return nil
}

// startTemporalOnly runs the design's worker in this process on queue.
func startTemporalOnly(tc client.Client, queue, url string) (stop func()) {
	receiverURL = url
	w := sdkworker.New(tc, queue, sdkworker.Options{
		MaxConcurrentWorkflowTaskExecutionSize:  200,
		MaxConcurrentLocalActivityExecutionSize: 200,
		// As many pollers as Omega's workers keep (worker.Config.Pollers).
		MaxConcurrentWorkflowTaskPollers: 8,
		MaxConcurrentActivityTaskPollers: 8,
	})
	w.RegisterWorkflow(UserWorkflow)
	w.RegisterActivity(notifyProvider)
	must(w.Start())
	return w.Stop
}

// signaler sends every event as a signal-with-start from a pool of senders, as the ingest path
// of that design would; events wait in a queue when the senders fall behind (open loop).
type signaler struct {
	in   chan event.Event
	done atomic.Int64
	wg   sync.WaitGroup
	stop chan struct{}
}

func newSignaler(tc client.Client, queue string, senders int) *signaler {
	s := &signaler{in: make(chan event.Event, 1<<20), stop: make(chan struct{})}
	for range senders {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.stop:
					return
				case ev := <-s.in:
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := tc.SignalWithStartWorkflow(ctx, "user/"+ev.UserID, signalEvent, ev,
						client.StartWorkflowOptions{TaskQueue: queue, WorkflowExecutionTimeout: 15 * time.Minute}, UserWorkflow, ev.UserID)
					cancel()
					if err == nil {
						s.done.Add(1)
					}
				}
			}
		}()
	}
	return s
}

// close stops the senders (events still queued are dropped: the step is over).
func (s *signaler) close() {
	close(s.stop)
	s.wg.Wait()
}
