package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/internal/testenv"
)

// TestRestart is `make run`, `make down` and `make run` again on the same data, the way a user
// restarts the demo: a stack of its own (data, ports) beside the test stack. The second run.sh
// returns within seconds (the restarted Temporal does not wait out the previous run's cluster
// membership), and a reach triggered then reaches the receiver within 20 seconds of its return.
func TestRestart(t *testing.T) {
	testenv.Require(t)
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dev := filepath.Join(root, "bin", "omega-dev")
	_, err = os.Stat(dev)
	require.NoError(t, err, "bin/omega-dev: make build-dev")
	bin := t.TempDir()
	require.NoError(t, os.Symlink(omegaBinary(t), filepath.Join(bin, "omega")))
	require.NoError(t, os.Symlink(dev, filepath.Join(bin, "omega-dev")))
	// PostgreSQL runs as its own user: the data directory must be reachable by it.
	data, err := os.MkdirTemp("", "omega-restart-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(data, 0o755))

	ports := freePorts(t, 8)
	api, receiver, metricsBase := ports[5], ports[6], ports[7]
	// Everything OMEGA_* of the test stack goes, but the Temporal store it runs on.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMEGA_") || strings.HasPrefix(kv, "OMEGA_TEMPORAL_DB=") {
			env = append(env, kv)
		}
	}
	env = append(env, "OMEGA_DATA="+data, "OMEGA_BIN="+bin, "OMEGA_UI_PORT=0",
		"OMEGA_TEMPORAL_PORT="+strconv.Itoa(ports[0]), "OMEGA_KAFKA_PORT="+strconv.Itoa(ports[1]),
		"OMEGA_REDIS_PORT="+strconv.Itoa(ports[2]), "OMEGA_PG_PORT="+strconv.Itoa(ports[3]),
		"OMEGA_API_PORT="+strconv.Itoa(api), "OMEGA_RECEIVER_PORT="+strconv.Itoa(receiver),
		"OMEGA_METRICS_PORT="+strconv.Itoa(metricsBase))
	script := func(name string, args ...string) time.Duration {
		t.Helper()
		cmd := exec.Command(filepath.Join(root, "deploy", "local", name), args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out.String())
		return time.Since(start)
	}
	t.Cleanup(func() {
		script("stack.sh", "down")
		if t.Failed() {
			t.Logf("the restarted stack's logs are in %s/log", data)
			return
		}
		_ = os.RemoveAll(data)
	})

	script("run.sh")
	script("stack.sh", "down")
	// run.sh waits until a reach can run; a restarted Temporal that does not serve for a minute
	// would make it slow rather than wrong.
	took := script("run.sh")
	returned := time.Now()
	require.Less(t, took, 30*time.Second, "the restarted stack took %s to serve (see %s/log/temporal.log)", took, data)

	key, err := os.ReadFile(filepath.Join(data, "dev-api-key"))
	require.NoError(t, err)
	user := testenv.Unique("restart-")
	body := fmt.Sprintf(`{"user_id":%q,"journey_id":"cart-reminder","idempotency_key":"restart","attrs":{"item_id":"sku-1"}}`, user)
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/omega.v1.ReachService/Trigger", api), strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "trigger: %s", answer)

	delivered := func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/deliveries", receiver))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ds []channel.Delivery
		if json.NewDecoder(resp.Body).Decode(&ds) != nil {
			return false
		}
		for _, d := range ds {
			if d.Message.UserID == user {
				return true
			}
		}
		return false
	}
	require.Eventually(t, delivered, 20*time.Second-time.Since(returned), 100*time.Millisecond,
		"no delivery within 20 s of run.sh returning after a restart")
	t.Logf("delivered %s after run.sh returned", time.Since(returned).Round(time.Millisecond))
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
