package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/testenv"
)

// TestRestart is `make run`, `make down` and `make run` again on the same data, the way a user
// restarts the demo: a stack of its own (data, ports) beside the test stack. The second run.sh
// returns within seconds (the restarted Temporal does not wait out the previous run's cluster
// membership), and a reach triggered then reaches the receiver within 20 seconds of its return.
// Then, on the restarted demo, the console in headless Chromium against the API (testConsoleOnDemo:
// a stack of its own costs tens of seconds, so the console's check shares this one).
func TestRestart(t *testing.T) {
	testenv.Require(t)
	s := newDemoStack(t)
	s.script("run.sh")
	s.script("stack.sh", "down")
	// run.sh waits until a reach can run; a restarted Temporal that does not serve for a minute
	// would make it slow rather than wrong.
	took := s.script("run.sh")
	returned := time.Now()
	require.Less(t, took, 30*time.Second, "the restarted stack took %s to serve (see %s/log/temporal.log)", took, s.data)

	user := testenv.Unique("restart-")
	s.call(t, "omega.v1.ReachService/Trigger", map[string]any{"user_id": user, "journey_id": "cart-reminder", "idempotency_key": "restart",
		"attrs": map[string]any{"item_id": "sku-1"}}, nil)
	delivered := func() bool {
		for _, d := range s.deliveries() {
			if d.Message.UserID == user {
				return true
			}
		}
		return false
	}
	require.Eventually(t, delivered, 20*time.Second-time.Since(returned), 100*time.Millisecond,
		"no delivery within 20 s of run.sh returning after a restart")
	t.Logf("delivered %s after run.sh returned", time.Since(returned).Round(time.Millisecond))

	t.Run("ConsoleOnTheDemo", func(t *testing.T) { testConsoleOnDemo(t, s) })
}

// freePorts returns n distinct ports free on 127.0.0.1 between 20000 and 30000: the first (for
// Temporal) followed by 19 that none of the others take (Temporal on PostgreSQL picks its other
// services' ports after its own, below the kernel's ephemeral range), the last followed by two
// more free ones (the metrics of api, cep and worker).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	free := func(p int) bool {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		_ = ln.Close()
		return true
	}
	seen := map[int]bool{}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		require.Less(t, tries, 10000, "no free ports")
		p := 20000 + rand.IntN(9990)
		span := 1
		switch len(ports) {
		case 0:
			span = 20
		case n - 1:
			span = 3
		}
		ok := true
		for i := range span {
			ok = ok && !seen[p+i] && free(p+i)
		}
		if ok {
			for i := range span {
				seen[p+i] = true
			}
			ports = append(ports, p)
		}
	}
	return ports
}
