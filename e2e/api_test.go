package e2e_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// bearer adds an API key to every call of a client.
func bearer(key string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}))
}

// newKey creates a key in the real key store.
func (p *pipeline) newKey(keys *apikey.Store, scopes ...string) string {
	p.t.Helper()
	_, secret, err := keys.Create(context.Background(), p.id+"-"+scopes[0]+"-"+time.Now().Format("150405.000000"), scopes, 0)
	require.NoError(p.t, err)
	return secret
}

// TestAPICancelWaitingJourney: through the API with real keys from PostgreSQL, on the real
// Temporal: a journey waiting for a response is cancelled by ID, two more by user and journey
// (found through Temporal's visibility), none of them sends its SMS, and List filters by status.
// Keys: a read key cannot cancel, a revoked key and no key are unauthenticated.
func TestAPICancelWaitingJourney(t *testing.T) {
	p := newPipeline(t)
	j := retargetWithTimeout(t, 10*time.Minute)
	journeys, err := journey.NewStatic(worker.Catalog(), j)
	require.NoError(t, err)
	p.startWorkerWith(journeys)
	tc := p.env.Temporal(t)
	keys := apikey.NewStore(p.store.Pool())
	h, err := api.NewHandler(api.Config{Producer: p.producer, Topic: p.topic, Temporal: tc, Audit: p.store, Keys: keys,
		TaskQueue: p.queue, Journeys: func(id string) bool { return id == j.ID || id == "cart-reminder" }, Log: testLogger(t)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	triggerKey, readKey := p.newKey(keys, apikey.ScopeTrigger), p.newKey(keys, apikey.ScopeRead)
	reaches := omegav1connect.NewReachServiceClient(http.DefaultClient, srv.URL, bearer(triggerKey))
	reader := omegav1connect.NewReachServiceClient(http.DefaultClient, srv.URL, connect.WithGRPC(), bearer(readKey))
	ctx := context.Background()
	user := p.id + "-waiting"

	var ids []string
	for _, k := range []string{"k1", "k2", "k3"} {
		tr, err := reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: user, JourneyId: j.ID, IdempotencyKey: k}))
		require.NoError(t, err)
		ids = append(ids, tr.Msg.GetReachId())
	}
	p.waitDeliveries(3) // the three pushes; each run now waits for push_open

	// Get asks the run where it is.
	var live *omegav1.Reach
	require.Eventually(t, func() bool {
		gr, err := reader.Get(ctx, connect.NewRequest(&omegav1.GetRequest{ReachId: ids[0]}))
		require.NoError(t, err)
		live = gr.Msg.GetReach()
		return live.GetStatus() == workflows.StatusWaiting
	}, 30*time.Second, 100*time.Millisecond, "the run reports waiting")
	require.Equal(t, "wait_open", live.GetCurrentStep())
	// The same key again is the same reach; with another journey it is refused.
	tr, err := reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: user, JourneyId: j.ID, IdempotencyKey: "k1"}))
	require.NoError(t, err)
	require.False(t, tr.Msg.GetCreated())
	_, err = reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: user, JourneyId: "cart-reminder", IdempotencyKey: "k1"}))
	require.Equal(t, connect.CodeAlreadyExists, connect.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), "idempotency_key")

	_, err = reader.Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{ReachId: ids[0]}))
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "a read key cannot cancel: %v", err)
	anonymous := omegav1connect.NewReachServiceClient(http.DefaultClient, srv.URL)
	_, err = anonymous.Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{ReachId: ids[0]}))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	revoked := p.newKey(keys, apikey.ScopeAdmin)
	_, err = keys.Revoke(ctx, mustID(t, keys, revoked))
	require.NoError(t, err)
	_, err = omegav1connect.NewReachServiceClient(http.DefaultClient, srv.URL, bearer(revoked)).
		Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{ReachId: ids[0]}))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))

	res, err := reaches.Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{ReachId: ids[0], Reason: "support ticket 7"}))
	require.NoError(t, err)
	require.Equal(t, []string{ids[0]}, res.Msg.GetCancelled())

	// Visibility lists the other two once it has caught up with their start (and with the close
	// of the first: two running runs may be the cancelled one and one of the others).
	require.Eventually(t, func() bool {
		lr, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "ExecutionStatus = 'Running' AND UserId = '" + user + "' AND JourneyId = '" + j.ID + "'"})
		require.NoError(t, err)
		var running []string
		for _, e := range lr.GetExecutions() {
			running = append(running, e.GetExecution().GetWorkflowId())
		}
		slices.Sort(running)
		return slices.Equal(running, slices.Sorted(slices.Values(ids[1:])))
	}, 30*time.Second, 200*time.Millisecond)
	res, err = reaches.Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{UserId: user, JourneyId: j.ID, Reason: "user deleted the cart"}))
	require.NoError(t, err)
	require.ElementsMatch(t, ids[1:], res.Msg.GetCancelled())

	for i, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var r workflows.ReachResult
		require.NoError(t, tc.GetWorkflow(wctx, id, "").Get(wctx, &r))
		cancel()
		require.Equal(t, workflows.StatusCancelled, r.Status, id)
		want := "user deleted the cart"
		if i == 0 {
			want = "support ticket 7"
		}
		require.Contains(t, r.Reason, want)
	}
	_, err = reaches.Cancel(ctx, connect.NewRequest(&omegav1.CancelRequest{ReachId: ids[0]}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "already finished")

	require.Eventually(t, func() bool {
		lr, err := reader.List(ctx, connect.NewRequest(&omegav1.ListRequest{UserId: user, Status: workflows.StatusCancelled}))
		require.NoError(t, err)
		return len(lr.Msg.GetReaches()) == 3
	}, 30*time.Second, 200*time.Millisecond)
	lr, err := reader.List(ctx, connect.NewRequest(&omegav1.ListRequest{UserId: user, Status: workflows.StatusSent}))
	require.NoError(t, err)
	require.Empty(t, lr.Msg.GetReaches())
	time.Sleep(300 * time.Millisecond)
	require.Len(t, p.receiver.Deliveries(), 3, "no SMS after a cancel")
}

// mustID finds a key's ID from its secret.
func mustID(t *testing.T, keys *apikey.Store, secret string) string {
	t.Helper()
	k, err := keys.Lookup(context.Background(), secret)
	require.NoError(t, err)
	return k.ID
}
