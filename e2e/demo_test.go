package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/consoletest"
	"github.com/omegareach/omega/internal/testenv"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// demoStack is `make run` (deploy/local/run.sh) on a stack of its own beside the test stack: its
// own data directory and free ports, the omega binary of this tree. Cleanup stops it.
type demoStack struct {
	t             *testing.T
	root, data    string
	env           []string
	api, receiver int
}

func newDemoStack(t *testing.T) *demoStack {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dev := filepath.Join(root, "bin", "omega-dev")
	_, err = os.Stat(dev)
	require.NoError(t, err, "bin/omega-dev: make build-dev")
	bin := t.TempDir()
	require.NoError(t, os.Symlink(omegaBinary(t), filepath.Join(bin, "omega")))
	require.NoError(t, os.Symlink(dev, filepath.Join(bin, "omega-dev")))
	// PostgreSQL runs as its own user: the data directory must be reachable by it.
	data, err := os.MkdirTemp("", "omega-demo-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(data, 0o755))

	ports := freePorts(t, 8)
	s := &demoStack{t: t, root: root, data: data, api: ports[5], receiver: ports[6]}
	// Everything OMEGA_* of the test stack goes, but the Temporal store it runs on.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMEGA_") || strings.HasPrefix(kv, "OMEGA_TEMPORAL_DB=") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "OMEGA_DATA="+data, "OMEGA_BIN="+bin, "OMEGA_UI_PORT=0",
		"OMEGA_TEMPORAL_PORT="+strconv.Itoa(ports[0]), "OMEGA_KAFKA_PORT="+strconv.Itoa(ports[1]),
		"OMEGA_REDIS_PORT="+strconv.Itoa(ports[2]), "OMEGA_PG_PORT="+strconv.Itoa(ports[3]),
		"OMEGA_API_PORT="+strconv.Itoa(s.api), "OMEGA_RECEIVER_PORT="+strconv.Itoa(s.receiver),
		"OMEGA_METRICS_PORT="+strconv.Itoa(ports[7]))
	t.Cleanup(func() {
		s.script("stack.sh", "down")
		if t.Failed() {
			t.Logf("the demo stack's logs are in %s/log", data)
			return
		}
		_ = os.RemoveAll(data)
	})
	return s
}

// script runs one of deploy/local's scripts on the stack and says how long it took.
func (s *demoStack) script(name string, args ...string) time.Duration {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.root, "deploy", "local", name), args...)
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	s.t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	require.NoError(s.t, err, "%s %s:\n%s", name, strings.Join(args, " "), out.String())
	return time.Since(start)
}

// url is the API's (and the console's) base URL.
func (s *demoStack) url() string { return fmt.Sprintf("http://127.0.0.1:%d", s.api) }

// key is the development key run.sh wrote (admin scope).
func (s *demoStack) key(t *testing.T) string {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(s.data, "dev-api-key"))
	require.NoError(t, err)
	return strings.TrimSpace(string(key))
}

// call posts body as JSON to an API method (omega.v1.Service/Method) with the dev key, as the
// curl that run.sh prints does, and decodes the answer into out (when not nil).
func (s *demoStack) call(t *testing.T, method string, body, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.url()+"/"+method, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.key(t))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", method, answer)
	if out != nil {
		require.NoError(t, json.Unmarshal(answer, out), "%s: %s", method, answer)
	}
}

// deliveries are what the stack's receiver got (nil while it does not answer).
func (s *demoStack) deliveries() []channel.Delivery {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/deliveries", s.receiver))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ds []channel.Delivery
	if json.NewDecoder(resp.Body).Decode(&ds) != nil {
		return nil
	}
	return ds
}

// testConsoleOnDemo is issue 20's browser test on the real demo: scripted traffic through the
// public API (events the demo's rules react to, and triggers of the retargeting journey), then,
// once the reaches have settled, headless Chromium signs in through the console's login form
// with the dev key and every figure of every page is held against the API's answer
// (internal/consoletest). The figures must be more than zeros: matches, sends, an opened push, a
// conversion, a suppression, a reach still waiting, live rule matches.
func testConsoleOnDemo(t *testing.T, s *demoStack) {
	b := consoletest.Open(t, s.url(), s.key(t))
	start := time.Now()
	p := testenv.Unique("c")
	u := func(name string) string { return p + "-" + name }
	now := time.Now().UTC().Truncate(time.Second)
	ingest := func(events ...event.Event) {
		t.Helper()
		var answer struct{ Accepted int }
		s.call(t, "omega.v1.EventService/Ingest", map[string]any{"events": events}, &answer)
		require.Equal(t, len(events), answer.Accepted)
	}
	trigger := func(user, item string) string {
		t.Helper()
		var answer struct {
			ReachID string `json:"reachId"`
		}
		s.call(t, "omega.v1.ReachService/Trigger", map[string]any{"user_id": user, "journey_id": "cart-retarget",
			"idempotency_key": "console", "attrs": map[string]any{"item_id": item}}, &answer)
		require.NotEmpty(t, answer.ReachID)
		return answer.ReachID
	}
	sku := func(n string) string { return p + "-sku-" + n }
	// Carts (cart-add -> cart-reminder; ann pays), hal's fourth cart within the day suppressed by
	// the daily cap, three views of an item (viewed-3x-no-chat -> chat-nudge), two favourites of an
	// item whose price drops (price-drop-favorited -> price-drop).
	ingest(
		event.Event{EventID: u("e1"), UserID: u("ann"), Type: "cart_add", ItemID: sku("1"), TS: now},
		event.Event{EventID: u("e2"), UserID: u("ann"), Type: "order_paid", ItemID: sku("1"), TS: now},
		event.Event{EventID: u("e3"), UserID: u("ben"), Type: "cart_add", ItemID: sku("2"), TS: now},
		event.Event{EventID: u("e4"), UserID: u("cal"), Type: "cart_add", ItemID: sku("3"), TS: now},
		event.Event{EventID: u("e5"), UserID: u("hal"), Type: "cart_add", ItemID: sku("a"), TS: now},
		event.Event{EventID: u("e6"), UserID: u("hal"), Type: "cart_add", ItemID: sku("b"), TS: now},
		event.Event{EventID: u("e7"), UserID: u("hal"), Type: "cart_add", ItemID: sku("c"), TS: now},
		event.Event{EventID: u("e8"), UserID: u("hal"), Type: "cart_add", ItemID: sku("d"), TS: now},
		event.Event{EventID: u("v1"), UserID: u("dee"), Type: "view", ItemID: sku("9"), TS: now.Add(-2 * time.Second)},
		event.Event{EventID: u("v2"), UserID: u("dee"), Type: "view", ItemID: sku("9"), TS: now.Add(-time.Second)},
		event.Event{EventID: u("v3"), UserID: u("dee"), Type: "view", ItemID: sku("9"), TS: now},
		event.Event{EventID: u("f1"), UserID: u("ben"), Type: "favorite", ItemID: sku("5"), TS: now.Add(-time.Minute)},
		event.Event{EventID: u("f2"), UserID: u("eve"), Type: "favorite", ItemID: sku("5"), TS: now.Add(-time.Minute)},
		event.Event{EventID: u("p1"), Type: "price_drop", ItemID: sku("5"), TS: now, Attrs: map[string]any{"new_price": "9.99"}},
	)
	// The retargeting journey for three: cal opens the push, fay pays, gus's reach waits for a day.
	calReach := trigger(u("cal"), sku("3"))
	trigger(u("fay"), sku("7"))
	trigger(u("gus"), sku("8"))

	byUser := func() map[string]int {
		got := map[string]int{}
		for _, d := range s.deliveries() {
			if strings.HasPrefix(d.Message.UserID, p+"-") {
				got[d.Message.UserID]++
			}
		}
		return got
	}
	want := map[string]int{u("ann"): 1, u("ben"): 2, u("cal"): 2, u("dee"): 1, u("eve"): 1, u("fay"): 1, u("gus"): 1, u("hal"): 3}
	require.Eventually(t, func() bool { got := byUser(); return got[u("cal")] == 2 && got[u("fay")] == 1 }, 30*time.Second, 100*time.Millisecond,
		"the pushes of the retargeting journey")
	ingest(event.Event{EventID: u("o1"), UserID: u("cal"), Type: "push_open", TS: time.Now().UTC(), Attrs: map[string]any{"reach_id": calReach}},
		event.Event{EventID: u("o2"), UserID: u("fay"), Type: "order_paid", ItemID: sku("7"), TS: time.Now().UTC()})

	// Settled: every message delivered, the response and the goal taken, every reach but gus's
	// ended, and the funnels unchanged since the previous look.
	funnel := func(journey string) (out struct {
		Matched, Sent, Opened, Converted, Suppressed, Running int64 `json:",string"`
	}) {
		s.call(t, "omega.v1.ReachService/Funnel", map[string]any{"journey_id": journey}, &out)
		return out
	}
	var last string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		got := byUser()
		retarget, reminder := funnel("cart-retarget"), funnel("cart-reminder")
		nudge, drop := funnel("chat-nudge"), funnel("price-drop")
		figures := fmt.Sprintf("cart-retarget %+v, cart-reminder %+v, chat-nudge %+v, price-drop %+v", retarget, reminder, nudge, drop)
		if maps.Equal(got, want) && figures == last && retarget.Opened == 1 && retarget.Converted == 1 && retarget.Running == 1 &&
			reminder.Suppressed >= 1 && reminder.Running == 0 && nudge.Running == 0 && drop.Running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's reaches did not settle within 30 s: deliveries %v (want %v); funnels: %s", got, want, figures)
		}
		last = figures
	}
	t.Logf("traffic sent and settled in %s", time.Since(start).Round(time.Millisecond))

	// Every page, every figure, against the API.
	start = time.Now()
	funnels := b.Journeys()
	require.ElementsMatch(t, []string{"cart-reminder", "cart-retarget", "chat-nudge", "price-drop"}, slices.Collect(maps.Keys(funnels)))
	for id, f := range funnels {
		require.Positive(t, f.GetMatched(), id)
		require.Positive(t, f.GetSent(), id)
	}
	require.Positive(t, funnels["cart-retarget"].GetConverted())
	whole := map[string]*omegav1.FunnelResponse{}
	for id := range funnels {
		require.NotEmpty(t, b.Journey(id)[1], id)
		charts := b.Funnels(id)
		require.Equal(t, []string{"all reaches"}, slices.Collect(maps.Keys(charts)), id)
		whole[id] = charts["all reaches"]
	}
	require.Positive(t, whole["cart-retarget"].GetOpened())
	require.Positive(t, whole["cart-retarget"].GetRunning())
	require.Positive(t, whole["cart-reminder"].GetSuppressedBy()["fatigue"])
	rules := b.Rules()
	require.GreaterOrEqual(t, rules["cart-add"]["live"], int64(7))
	require.Equal(t, int64(2), rules["price-drop-favorited"]["live"])
	require.Equal(t, int64(1), rules["viewed-3x-no-chat"]["live"])
	for _, name := range []string{"cal", "hal", "ben"} {
		require.NotEmpty(t, b.User(u(name)), name)
	}
	t.Logf("the console's pages checked in %s", time.Since(start).Round(time.Millisecond))
}
