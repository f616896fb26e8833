package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/omegareach/omega/activities/plugin"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/worker"
)

// Serving holds out for the worker's own polls: matching answering for the queue is not enough.
func TestServing(t *testing.T) {
	env := testenv.Require(t)
	c := env.Temporal(t)
	queue := testenv.Unique("serving-")
	ctx := context.Background()
	require.NoError(t, worker.WaitServing(ctx, c, queue, ""), "history and matching answer")
	require.ErrorContains(t, worker.Serving(ctx, c, queue, "nobody"), "no Workflow task poller of nobody")

	identity := testenv.Unique("worker-")
	w, err := worker.New(worker.Config{Temporal: c, TaskQueue: queue, Identity: identity, Redis: env.Redis(t), Audit: env.Audit(t),
		Settings: plugin.Values{"OMEGA_WEBHOOK_URL": "http://127.0.0.1:1/deliveries"}})
	require.NoError(t, err)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, worker.WaitServing(wctx, c, queue, identity))
}
