package e2e_test

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestTaskRetryWritesTheTrailOnce: a reach's workflow task writes its audit records, then fails
// before it completes, as when its process dies there. Temporal runs the task again: its steps
// run again and write the same records at the new attempt's time, which the table's unique index
// (it holds the time) does not catch. The trail still holds each record once, and the user got
// one message.
func TestTaskRetryWritesTheTrailOnce(t *testing.T) {
	p := newPipeline(t)
	var failed atomic.Bool
	p.startWorkerConfig(func(c *worker.Config) {
		c.Interceptors = []interceptor.WorkerInterceptor{&failAfterAudit{failed: &failed}}
	})
	user := p.id + "-retry"
	id, result := p.trigger(user, "cart-reminder", "k")
	require.Equal(t, workflows.StatusSent, result().Status)
	require.True(t, failed.Load(), "the first attempt failed after its audit records were written")
	require.Len(t, p.receiver.Deliveries(), 1, "one message")
	require.Equal(t, 1, p.receiver.Deliveries()[0].Attempts,
		"one provider call: the task run again found its send in the ledger (a provider that does not deduplicate sends once)")

	r, err := p.store.Get(t.Context(), id)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, rec := range r.Records {
		seen[rec.Step+":"+rec.Kind]++
	}
	require.Contains(t, seen, "send:dispatched")
	for k, n := range seen {
		require.Equal(t, 1, n, "%s written %d times: %v", k, n, kinds(r))
	}
}

// failAfterAudit fails the first workflow task that wrote audit records, once they are written:
// the task's other results are lost with it, and the next attempt runs its steps again.
type failAfterAudit struct {
	interceptor.WorkerInterceptorBase
	failed *atomic.Bool
}

func (f *failAfterAudit) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &failAfterAuditInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, failed: f.failed}
}

type failAfterAuditInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	failed *atomic.Bool
}

func (i *failAfterAuditInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&failAfterAuditOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, failed: i.failed})
}

type failAfterAuditOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	failed *atomic.Bool
}

func (o *failAfterAuditOutbound) ExecuteLocalActivity(ctx workflow.Context, activity string, args ...any) workflow.Future {
	f := o.Next.ExecuteLocalActivity(ctx, activity, args...)
	if len(args) == 1 {
		if _, ok := args[0].([]audit.Record); ok {
			return failingFuture{Future: f, failed: o.failed}
		}
	}
	return f
}

type failingFuture struct {
	workflow.Future
	failed *atomic.Bool
}

func (f failingFuture) Get(ctx workflow.Context, v any) error {
	err := f.Future.Get(ctx, v)
	if err == nil && f.failed.CompareAndSwap(false, true) {
		panic("the process dies: its audit records are written, its task is not completed")
	}
	return err
}
