package e2e_test

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

// TestWorkerKilledAfterProviderAccepted: the worker process is SIGKILLed after the provider
// accepted a send and before the activity completed. The activity times out, a second worker
// retries it with the same idempotency key, the provider deduplicates: one delivery, one
// dispatched audit row, the run ends sent.
func TestWorkerKilledAfterProviderAccepted(t *testing.T) {
	p := newPipeline(t)
	bin := omegaBinary(t)

	store := journey.NewStore(p.store.Pool(), worker.Catalog())
	for _, j := range journey.Demo() {
		_, err := store.Apply(context.Background(), j)
		require.NoError(t, err)
	}
	srv := httptest.NewServer(p.receiver)
	t.Cleanup(srv.Close)
	p.receiver.HoldAfterAccept(time.Minute, 1)

	startWorker := func() *exec.Cmd {
		cmd := exec.Command(bin, "worker")
		cmd.Env = p.stackEnv("OMEGA_WEBHOOK_URL="+srv.URL, "OMEGA_WEBHOOK_ALLOW=127.0.0.0/8", "OMEGA_DAILY_CAP=100")
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := startWorker()
	user := p.id + "-kill"
	id, result := p.trigger(user, "cart-reminder", "k")
	require.Eventually(t, func() bool { return len(p.receiver.Deliveries()) == 1 }, 30*time.Second, 20*time.Millisecond,
		"the provider accepted the send")
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	startWorker()

	res := result() // the dispatch activity times out (30s) and is retried on the second worker
	require.Equal(t, workflows.StatusSent, res.Status)
	ds := p.receiver.Deliveries()
	require.Len(t, ds, 1, "delivered once")
	require.Equal(t, 2, ds[0].Attempts, "the retry reached the provider with the same key")
	r, err := p.store.Get(context.Background(), id)
	require.NoError(t, err)
	n := 0
	for _, k := range kinds(r) {
		if k == "dispatched" {
			n++
		}
	}
	require.Equal(t, 1, n, "one dispatched audit row")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestWorkerStopFinishesItsTasks: a worker stopped (SIGTERM, make down, a deploy) while a reach's
// send is in flight lets the task finish before it goes, so no other worker runs it again and
// sends the message a second time (a provider that does not deduplicate by idempotency key would
// deliver it twice).
func TestWorkerStopFinishesItsTasks(t *testing.T) {
	p := newPipeline(t)
	w := p.startWorkerConfig(func(*worker.Config) {})
	p.receiver.HoldAfterAccept(2*time.Second, 1)
	user := p.id + "-stop"
	_, result := p.trigger(user, "cart-reminder", "k")
	require.Eventually(t, func() bool { return len(p.receiver.Deliveries()) == 1 }, 30*time.Second, 10*time.Millisecond,
		"the provider accepted the send")
	w.Stop() // the provider has not answered yet
	p.startWorker()

	require.Equal(t, workflows.StatusSent, result().Status)
	ds := p.receiver.Deliveries()
	require.Len(t, ds, 1)
	require.Equal(t, 1, ds[0].Attempts, "the stopped worker finished the send: no second attempt")
}
