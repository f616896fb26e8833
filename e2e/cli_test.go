package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/worker"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// omegaBinary builds bin/omega once per test run.
func omegaBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "omega-e2e-"); binErr != nil {
			return
		}
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, "omega"), "../cmd/omega")
		build.Stderr = os.Stderr
		binErr = build.Run()
	})
	require.NoError(t, binErr)
	return filepath.Join(binDir, "omega")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// waitAPI waits until `omega api` at addr answers its health check.
func waitAPI(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+addr+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "omega api is up")
}

// startAPIProcess runs `omega api` (bin) as a process on a free port, with the stack's
// environment and env over it, until the test ends; it returns its address once it answers.
func (p *pipeline) startAPIProcess(t *testing.T, bin string, env ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	apiProc := exec.Command(bin, "api")
	apiProc.Env = p.stackEnv(append([]string{"OMEGA_API_ADDR=" + addr}, env...)...)
	apiProc.Stdout, apiProc.Stderr = testWriter{t}, testWriter{t}
	require.NoError(t, apiProc.Start())
	t.Cleanup(func() { _ = apiProc.Process.Signal(os.Interrupt); _ = apiProc.Wait() })
	waitAPI(t, addr)
	return addr
}

// omegaCLI runs the omega CLI (bin) with the stack's environment and env over it, and returns
// its output; its error carries the CLI's stderr.
func (p *pipeline) omegaCLI(bin string) func(env []string, args ...string) (string, error) {
	return func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = p.stackEnv(env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("omega %s: %w: %s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String(), err
	}
}

// omegaWithKey runs the omega CLI (bin) against the API at addr with an API key, as an
// operator does.
func (p *pipeline) omegaWithKey(bin, addr string) func(key string, args ...string) (string, error) {
	run := p.omegaCLI(bin)
	return func(key string, args ...string) (string, error) {
		return run([]string{"OMEGA_API_URL=http://" + addr, "OMEGA_API_KEY=" + key}, args...)
	}
}

// stackEnv is the environment the omega processes of a test get.
func (p *pipeline) stackEnv(extra ...string) []string {
	return append(append(os.Environ(), "OMEGA_TEMPORAL_ADDR="+p.env.TemporalAddr, "OMEGA_REDIS_ADDR="+p.env.RedisAddr,
		"OMEGA_PG_URL="+p.env.PGURL, "OMEGA_KAFKA_BROKERS="+strings.Join(p.env.Brokers, ","), "OMEGA_TASK_QUEUE="+p.queue), extra...)
}

// TestOperatorCLI drives the omega CLI against `omega api` as processes, the way an operator
// does: a key from `omega apikey create`, a journey started, inspected and cancelled by user with
// `omega reaches`, events sent with `omega events send`, a wrong-scope key refused, a revoked key
// listed.
func TestOperatorCLI(t *testing.T) {
	p := newPipeline(t)
	bin := omegaBinary(t)
	j := retargetWithTimeout(t, 10*time.Minute)
	j.ID = p.id + "-retarget"
	_, err := journey.NewStore(p.store.Pool(), worker.Catalog()).Apply(context.Background(), j)
	require.NoError(t, err)
	journeys, err := journey.NewStatic(worker.Catalog(), j)
	require.NoError(t, err)
	p.startWorkerWith(journeys)

	addr := p.startAPIProcess(t, bin)
	omega := p.omegaWithKey(bin, addr)
	name := p.id + "-ops"
	out, err := omega("", "apikey", "create", "--name", name, "--scopes", "trigger,read")
	require.NoError(t, err)
	key := strings.TrimSpace(out)
	require.True(t, strings.HasPrefix(key, apikey.Prefix), out)
	out, err = omega("", "apikey", "create", "--name", name+"-ingest", "--scopes", "ingest", "-o", "json")
	require.NoError(t, err)
	var created []struct {
		Key    string   `json:"key"`
		Scopes []string `json:"scopes"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	require.Equal(t, []string{"ingest"}, created[0].Scopes)
	ingestKey := created[0].Key

	user := p.id + "-cli"
	out, err = omega(key, "reaches", "trigger", "--user", user, "--journey", j.ID, "--key", "k1", "--attr", "item_id=sku-3")
	require.NoError(t, err)
	reach := "reach/api/" + user + "/k1"
	require.Equal(t, "started "+reach+"\n", out)
	out, err = omega(key, "reaches", "trigger", "--user", user, "--journey", j.ID, "--key", "k1")
	require.NoError(t, err)
	require.Equal(t, "already started "+reach+"\n", out)
	p.waitDeliveries(1)
	require.Equal(t, "sku-3 is still in your cart.", p.receiver.Deliveries()[0].Message.Body)

	require.Eventually(t, func() bool {
		out, err = omega(key, "reaches", "get", reach)
		require.NoError(t, err)
		return strings.Contains(out, "dispatched") && strings.Contains(out, "status   waiting")
	}, 30*time.Second, 200*time.Millisecond, "last output: %s", out)
	require.Contains(t, out, "at step  wait_open (journey version 1)")

	// Visibility lists the run a moment after its start: retry until the cancel finds it.
	require.Eventually(t, func() bool {
		out, err = omega(key, "reaches", "cancel", "--user", user, "--journey", j.ID, "--reason", "asked by support")
		require.NoError(t, err)
		return out == "cancelled "+reach+"\n"
	}, 30*time.Second, 300*time.Millisecond, "last output: %s", out)
	require.Eventually(t, func() bool {
		out, err = omega(key, "reaches", "list", "--user", user, "--status", "cancelled", "-o", "json")
		require.NoError(t, err)
		return strings.Contains(out, reach)
	}, 30*time.Second, 200*time.Millisecond)

	// The user's timeline and the journey's funnel, as an operator and a growth team read them.
	out, err = omega(key, "reaches", "timeline", "--user", user)
	require.NoError(t, err)
	require.Contains(t, out, "asked by support")
	require.Contains(t, out, "dispatched")
	out, err = omega(key, "reaches", "funnel", "--journey", j.ID, "-o", "json")
	require.NoError(t, err)
	require.JSONEq(t, `{"matched":"1","sent":"1","cancelled":"1"}`, out)
	out, err = omega(key, "reaches", "funnel", "--journey", j.ID)
	require.NoError(t, err)
	require.Contains(t, out, "cancelled   1        100.0%")

	// Events: the trigger/read key lacks the ingest scope; the ingest key sends.
	_, err = omega(key, "events", "send", "--user", user, "--type", "cart_add", "--item", "sku-1")
	require.ErrorContains(t, err, "permission_denied")
	require.ErrorContains(t, err, "ingest")
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	now := time.Now().UTC().Format(time.RFC3339)
	require.NoError(t, os.WriteFile(evFile, []byte(fmt.Sprintf(
		`{"event_id":"%[1]s-e1","user_id":"%[1]s","type":"view","ts":"%[2]s"}`+"\n\n"+
			`{"event_id":"%[1]s-e2","user_id":"%[1]s","type":"view","ts":"%[2]s","attrs":{"price":3}}`+"\n", user, now)), 0o600))
	out, err = omega(ingestKey, "events", "send", "-f", evFile)
	require.NoError(t, err)
	require.Equal(t, "accepted 2 events\n", out)
	require.NoError(t, os.WriteFile(evFile, []byte(`{"event_id":"x","type":"view","ts":"`+now+`"}`+"\n"), 0o600))
	_, err = omega(ingestKey, "events", "send", "-f", evFile)
	require.ErrorContains(t, err, "line 1: user_id: required")

	// Revoked keys are listed, never with their secret.
	out, err = omega("", "apikey", "revoke", name+"-ingest")
	require.NoError(t, err)
	require.Contains(t, out, "revoked")
	out, err = omega("", "apikey", "list", "-o", "json")
	require.NoError(t, err)
	require.NotContains(t, out, ingestKey)
	var keys []apikey.Key
	require.NoError(t, json.Unmarshal([]byte(out), &keys))
	for _, k := range keys {
		if k.Name == name+"-ingest" {
			require.False(t, k.RevokedAt.IsZero())
		}
	}
	_, err = omega("", "apikey", "create", "--name", name+"-x", "--scopes", "root")
	require.ErrorContains(t, err, "unknown scope")

	// --save (what make run does): the live key in the file is reused; a revoked one is replaced;
	// a file holding another name's key, or a name whose live key is not the file's, is refused.
	saved := filepath.Join(t.TempDir(), "dev-key")
	create := func(keyName string, extra ...string) (string, error) {
		out, err := omega("", append([]string{"apikey", "create", "--name", keyName, "--scopes", "admin", "--save", saved}, extra...)...)
		return strings.TrimSpace(out), err
	}
	k1, err := create(name + "-dev")
	require.NoError(t, err)
	fileKey := func() string {
		b, err := os.ReadFile(saved)
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	require.Equal(t, k1, fileKey())
	k, err := create(name + "-dev")
	require.NoError(t, err)
	require.Equal(t, k1, k, "reused while live")
	_, err = create(name + "-other")
	require.ErrorContains(t, err, "holds the live key")
	_, err = omega("", "apikey", "revoke", name+"-dev")
	require.NoError(t, err)
	k2, err := create(name + "-dev")
	require.NoError(t, err)
	require.NotEqual(t, k1, k2, "a revoked saved key is replaced")
	require.Equal(t, k2, fileKey())
	require.NoError(t, os.Remove(saved))
	_, err = create(name + "-dev")
	require.ErrorContains(t, err, "--replace", "the name's live key is not the file's: refused")
	_, err = omega(key, "reaches", "list", "--user", user) // the failed creates revoked nothing
	require.NoError(t, err)
	k3, err := create(name+"-dev", "--replace")
	require.NoError(t, err)
	require.NotEqual(t, k2, k3)
	_, err = omega("", "apikey", "create", "--name", name+"-z", "--scopes", "read", "--save", saved)
	require.ErrorContains(t, err, "holds the live key", "scopes or name differ from the file's key")
}
