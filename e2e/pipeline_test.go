package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omegareach/omega/activities/plugin"

	"connectrpc.com/connect"
	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/worker"
)

const dailyCap = 3

// pipeline is one isolated copy of Omega Reach on the shared servers: its own topics, group,
// task queue, Redis keys and users.
type pipeline struct {
	t        *testing.T
	env      testenv.Env
	id       string
	topic    string
	dlq      string
	queue    string
	prefix   string
	blkey    string
	receiver *channel.Receiver
	store    *audit.Store
	producer sarama.SyncProducer
	// rdb is the Redis the worker and the CEP stage use (the single node unless a test says).
	rdb redis.UniversalClient
}

func saramaConfig() *sarama.Config {
	sc := cep.DefaultSaramaConfig()
	// Short group timers: joins and closes take milliseconds instead of seconds.
	sc.Consumer.Group.Session.Timeout = 2 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	sc.Consumer.Group.Rebalance.Timeout = 2 * time.Second
	return sc
}

func newPipeline(t *testing.T) *pipeline {
	env := testenv.Require(t)
	id := testenv.Unique("e2e")
	p := &pipeline{
		t: t, env: env, id: id,
		topic: id + ".events", dlq: id + ".events.dlq", queue: id, prefix: id, blkey: id + ":blacklist",
		receiver: channel.NewReceiver(testLogger(t)),
		store:    env.Audit(t),
	}
	admin, err := sarama.NewClusterAdmin(env.Brokers, saramaConfig())
	require.NoError(t, err)
	for _, tp := range []string{p.topic, p.dlq} {
		require.NoError(t, admin.CreateTopic(tp, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false))
	}
	require.NoError(t, admin.Close())
	p.producer, err = api.NewProducer(env.Brokers, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.producer.Close() })
	return p
}

func (p *pipeline) redis() redis.UniversalClient {
	if p.rdb == nil {
		p.rdb = p.env.Redis(p.t)
	}
	return p.rdb
}

// startWorker runs a reach worker with the demo journeys posting to the test's receiver.
func (p *pipeline) startWorker() { p.startWorkerWith(nil) }

func (p *pipeline) startWorkerWith(journeys journey.Source) {
	p.startWorkerConfig(func(c *worker.Config) { c.Journeys = journeys })
}

// startWorkerConfig runs a reach worker whose config the test adjusts (stopped at cleanup, or
// before by the test).
func (p *pipeline) startWorkerConfig(adjust func(*worker.Config)) sdkworker.Worker {
	srv := httptest.NewServer(p.receiver)
	p.t.Cleanup(srv.Close)
	cfg := worker.Config{
		Temporal: p.env.Temporal(p.t), TaskQueue: p.queue, Redis: p.redis(), KeyPrefix: p.prefix,
		BlacklistKey: p.blkey, WhitelistKey: p.prefix + ":whitelist", Audit: p.store, Log: testLogger(p.t),
		Settings: plugin.Values{"OMEGA_WEBHOOK_URL": srv.URL, "OMEGA_WEBHOOK_ALLOW": "127.0.0.0/8", "OMEGA_DAILY_CAP": strconv.Itoa(dailyCap)},
	}
	adjust(&cfg)
	w, err := worker.New(cfg)
	require.NoError(p.t, err)
	require.NoError(p.t, w.Start())
	var once sync.Once
	p.t.Cleanup(func() { once.Do(w.Stop) })
	return stopOnce{Worker: w, once: &once}
}

// stopOnce stops its worker once, whether the test or the cleanup stops it first.
type stopOnce struct {
	sdkworker.Worker
	once *sync.Once
}

func (s stopOnce) Stop() { s.once.Do(s.Worker.Stop) }

// startCEP runs a CEP replica with the demo rules in group and returns a stop function that waits
// for it to leave.
func (p *pipeline) startCEP(group, keyPrefix string) (stop func()) {
	return p.startCEPWith(group, keyPrefix, cep.DemoRules())
}

func (p *pipeline) startCEPWith(group, keyPrefix string, rules []cep.Rule) (stop func()) {
	return p.startCEPConfig(group, keyPrefix, rules, func(*cep.Config) {})
}

// startCEPConfig runs a CEP replica whose config the test adjusts.
func (p *pipeline) startCEPConfig(group, keyPrefix string, rules []cep.Rule, adjust func(*cep.Config)) (stop func()) {
	cfg := cep.Config{
		Brokers: p.env.Brokers, Sarama: saramaConfig(), Group: group, Topic: p.topic, DLQTopic: p.dlq,
		Redis: p.redis(), KeyPrefix: keyPrefix, ReachPrefix: p.prefix, Rules: rules, TimerInterval: 50 * time.Millisecond,
		Starter: p.starter(), Log: testLogger(p.t),
	}
	adjust(&cfg)
	st, err := cep.New(cfg)
	require.NoError(p.t, err)
	return p.run(st)
}

func (p *pipeline) starter() cep.Starter {
	return &cep.TemporalStarter{Client: p.env.Temporal(p.t), TaskQueue: p.queue}
}

// run runs a CEP stage until the returned stop (or the test's cleanup) is called.
func (p *pipeline) run(st *cep.Stage) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := st.Run(ctx); err != nil {
			p.t.Errorf("cep stage: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	p.t.Cleanup(stop)
	return stop
}

func (p *pipeline) produce(key string, value []byte) {
	_, _, err := p.producer.SendMessage(&sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)})
	require.NoError(p.t, err)
}

func (p *pipeline) produceEvent(ev event.Event) {
	if ev.TS.IsZero() {
		ev.TS = time.Now().UTC()
	}
	b, err := ev.Encode()
	require.NoError(p.t, err)
	p.produce(ev.Key(), b)
}

// deliveriesByUser counts distinct deliveries (idempotency keys) per user.
func (p *pipeline) deliveriesByUser() map[string]int {
	out := map[string]int{}
	for _, d := range p.receiver.Deliveries() {
		out[d.Message.UserID]++
	}
	return out
}

func (p *pipeline) waitDeliveries(n int) {
	p.t.Helper()
	p.waitDeliveriesWithin(n, 60*time.Second)
}

func (p *pipeline) waitDeliveriesWithin(n int, d time.Duration) {
	p.t.Helper()
	if !assert.Eventually(p.t, func() bool { return len(p.receiver.Deliveries()) >= n }, d, 50*time.Millisecond) {
		p.t.Fatalf("want %d deliveries, have %v", n, p.deliveriesByUser())
	}
}

// waitCaughtUp waits until group has committed every offset of the topic.
func (p *pipeline) waitCaughtUp(group string) {
	p.t.Helper()
	client, err := sarama.NewClient(p.env.Brokers, saramaConfig())
	require.NoError(p.t, err)
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	require.NoError(p.t, err)
	parts, err := client.Partitions(p.topic)
	require.NoError(p.t, err)
	require.Eventually(p.t, func() bool {
		offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{p.topic: parts})
		if err != nil {
			return false
		}
		for _, part := range parts {
			hw, err := client.GetOffset(p.topic, part, sarama.OffsetNewest)
			if err != nil {
				return false
			}
			if hw == 0 {
				continue // an empty partition has nothing to commit
			}
			b := offs.GetBlock(p.topic, part)
			if b == nil || b.Offset < hw {
				return false
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "group %s did not catch up on %s", group, p.topic)
}

// readDLQ returns every record on the dead-letter topic, waiting until there are n.
func (p *pipeline) readDLQ(n int) []*sarama.ConsumerMessage {
	p.t.Helper()
	consumer, err := sarama.NewConsumer(p.env.Brokers, saramaConfig())
	require.NoError(p.t, err)
	defer consumer.Close()
	parts, err := consumer.Partitions(p.dlq)
	require.NoError(p.t, err)
	msgs := make(chan *sarama.ConsumerMessage, 100)
	for _, part := range parts {
		pc, err := consumer.ConsumePartition(p.dlq, part, sarama.OffsetOldest)
		require.NoError(p.t, err)
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	var out []*sarama.ConsumerMessage
	deadline := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case m := <-msgs:
			out = append(out, m)
		case <-deadline:
			p.t.Fatalf("dead-letter topic holds %d records, want %d", len(out), n)
		}
	}
	// Nothing beyond n arrives.
	select {
	case m := <-msgs:
		p.t.Fatalf("unexpected extra dead letter: %s", m.Value)
	case <-time.After(500 * time.Millisecond):
	}
	return out
}

func header(m *sarama.ConsumerMessage, k string) string {
	for _, h := range m.Headers {
		if string(h.Key) == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestPipeline: events produced with Sarama become exactly one delivery per matching user, none
// for a blacklisted user, none beyond the daily cap, one dead letter per malformed event, an audit
// trail per reach, and runs findable by UserId; a replay of the whole topic sends nothing new.
func TestPipeline(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	rdb := p.env.Redis(t)
	u := func(name string) string { return p.id + "-" + name }

	blocked := u("blocked")
	require.NoError(t, rdb.SAdd(ctx, p.blkey, blocked).Err())

	p.startWorker()
	group := p.id + "-cep"
	p.startCEP(group, p.prefix)

	var plain []string
	for i := range 5 {
		plain = append(plain, u(fmt.Sprintf("user%d", i)))
	}
	for _, user := range plain {
		p.produceEvent(event.Event{EventID: user + "-add", UserID: user, Type: "cart_add", ItemID: "sku-1"})
	}
	// The same event again (a producer retry): no second reach.
	p.produceEvent(event.Event{EventID: plain[0] + "-add", UserID: plain[0], Type: "cart_add", ItemID: "sku-1"})
	// Events that match no rule: another type, and a cart_add failing the condition (no item).
	p.produceEvent(event.Event{EventID: plain[1] + "-view", UserID: plain[1], Type: "view", ItemID: "sku-1"})
	p.produceEvent(event.Event{EventID: plain[2] + "-noitem", UserID: plain[2], Type: "cart_add"})
	// A blacklisted user.
	p.produceEvent(event.Event{EventID: blocked + "-add", UserID: blocked, Type: "cart_add", ItemID: "sku-1"})
	// A user who adds five items: the cap lets three through.
	capped := u("capped")
	for i := range 5 {
		p.produceEvent(event.Event{EventID: fmt.Sprintf("%s-add-%d", capped, i), UserID: capped, Type: "cart_add", ItemID: fmt.Sprintf("sku-%d", i)})
	}
	// Malformed records, interleaved with the good ones above and below.
	p.produce(plain[3], []byte("this is not json"))
	p.produce(plain[3], []byte(`{"user_id":"x","type":"cart_add","ts":"2026-11-24T10:00:00Z"}`))
	p.produce(plain[3], []byte(`{"event_id":"e","user_id":"x","type":"cart_add","ts":12}`))
	// Valid on the wire, but not for its type: cart_add is a user's, and names none.
	p.produce(plain[3], []byte(`{"event_id":"e-nouser","item_id":"sku-1","type":"cart_add","ts":"`+time.Now().UTC().Format(time.RFC3339)+`"}`))
	// A user whose ID is not ASCII, in an event whose ID is not either: the reach starts (its
	// workflow ID percent-encodes them: Temporal carries it in a gRPC header, printable ASCII
	// only), and the user's next event, behind it on the partition, is served too.
	intl := u("zoë")
	p.produceEvent(event.Event{EventID: intl + "-add-é", UserID: intl, Type: "cart_add", ItemID: "sku-1"})
	p.produceEvent(event.Event{EventID: intl + "-add-2", UserID: intl, Type: "cart_add", ItemID: "sku-2"})
	late := u("late")
	p.produceEvent(event.Event{EventID: late + "-add", UserID: late, Type: "cart_add", ItemID: "sku-9"})

	want := map[string]int{capped: dailyCap, late: 1, intl: 2}
	for _, user := range plain {
		want[user] = 1
	}
	total := 0
	for _, n := range want {
		total += n
	}
	p.waitDeliveries(total)
	p.waitCaughtUp(group)
	reaches := map[string][]audit.Reach{}
	require.Eventually(t, func() bool {
		for _, user := range append([]string{blocked, capped, late}, plain...) {
			rs, _, err := p.store.ListByUser(ctx, user, 100, "")
			require.NoError(t, err)
			for _, r := range rs {
				if r.Status == "running" {
					return false
				}
			}
			reaches[user] = rs
		}
		// A suppressed reach writes its trail when its one workflow task ends: wait for all of
		// them, not only for none running.
		return len(reaches[capped]) == 5 && len(reaches[blocked]) == 1
	}, 30*time.Second, 100*time.Millisecond, "every reach finishes")
	require.Equal(t, want, p.deliveriesByUser(), "deliveries per user")

	// Audit: a full trail for a sent reach, the reason for a suppressed one.
	require.Len(t, reaches[plain[0]], 1)
	r := reaches[plain[0]][0]
	require.Equal(t, "sent", r.Status)
	require.Equal(t, "cart-add", r.RuleID)
	require.Equal(t, "cart-reminder", r.JourneyID)
	require.Equal(t, []string{"received", "matched", "routed", "filtered", "dispatched", "completed"}, kinds(r))
	require.Len(t, reaches[blocked], 1)
	require.Equal(t, "suppressed", reaches[blocked][0].Status)
	require.Contains(t, reaches[blocked][0].Records[len(reaches[blocked][0].Records)-1].Reason, "blacklist")
	require.Len(t, reaches[capped], 5)
	statuses := map[string]int{}
	for _, r := range reaches[capped] {
		statuses[r.Status]++
	}
	require.Equal(t, map[string]int{"sent": dailyCap, "suppressed": 5 - dailyCap}, statuses)
	// The view and the item-less add started nothing: one reach each, from their matching add.
	require.Len(t, reaches[plain[1]], 1)
	require.Len(t, reaches[plain[2]], 1)

	// Dead letters: one per malformed record, each with its reason.
	dead := p.readDLQ(4)
	var reasons []string
	for _, m := range dead {
		reasons = append(reasons, header(m, event.HeaderDLQReason))
	}
	sort.Strings(reasons)
	require.Len(t, reasons, 4)
	require.Contains(t, strings.Join(reasons, "\n"), "user_id: required: cart_add is user-scoped")
	require.Contains(t, strings.Join(reasons, "\n"), "event_id: required")
	require.Contains(t, strings.Join(reasons, "\n"), "undecodable event")

	// Operators find the run by UserId in Temporal's visibility.
	tc := p.env.Temporal(t)
	require.Eventually(t, func() bool {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("UserId = '%s' AND ReachStatus = 'sent'", plain[0]),
		})
		return err == nil && len(resp.GetExecutions()) == 1 &&
			resp.GetExecutions()[0].GetExecution().GetWorkflowId() == "reach/cart-add/"+plain[0]+"/"+plain[0]+"-add"
	}, 30*time.Second, 200*time.Millisecond, "the run is found by UserId")
	require.Eventually(t, func() bool {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("UserId = '%s' AND ReachStatus = 'sent'", intl),
		})
		if err != nil || len(resp.GetExecutions()) != 2 {
			return false
		}
		ids := []string{resp.GetExecutions()[0].GetExecution().GetWorkflowId(), resp.GetExecutions()[1].GetExecution().GetWorkflowId()}
		return slices.Contains(ids, "reach/cart-add/"+p.id+"-zo%C3%AB/"+p.id+"-zo%C3%AB-add-%C3%A9")
	}, 30*time.Second, 200*time.Millisecond, "the non-ASCII user's runs are found by UserId, their IDs percent-encoded")

	// A replay of the whole topic by a new group, with the dedupe marks out of sight (another key
	// prefix), starts no second run and sends nothing: workflow IDs collapse the matches.
	stopReplay := p.startCEP(p.id+"-replay", p.prefix+"-replay")
	p.waitCaughtUp(p.id + "-replay")
	stopReplay()
	time.Sleep(time.Second)
	require.Equal(t, want, p.deliveriesByUser(), "deliveries after the replay")
	for _, d := range p.receiver.Deliveries() {
		require.Equal(t, 1, d.Attempts, "provider saw %s more than once", d.IdempotencyKey)
	}
}

// TestAPI: events ingested through the API reach the user; List shows the reach with its trail;
// bad arguments are InvalidArgument naming the field.
func TestAPI(t *testing.T) {
	p := newPipeline(t)
	before := scrape(t)
	p.startWorker()
	p.startCEP(p.id+"-cep", p.prefix)
	h, err := api.NewHandler(api.Config{
		Producer: p.producer, Topic: p.topic, Temporal: p.env.Temporal(t), Audit: p.store,
		TaskQueue: p.queue, Journeys: func(id string) bool { return id == "cart-reminder" }, Log: testLogger(t),
		Keys: apikey.NewStore(p.store.Pool()),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	key := p.newKey(apikey.NewStore(p.store.Pool()), apikey.ScopeIngest, apikey.ScopeTrigger, apikey.ScopeRead)
	events := omegav1connect.NewEventServiceClient(http.DefaultClient, srv.URL, bearer(key))
	reaches := omegav1connect.NewReachServiceClient(http.DefaultClient, srv.URL, connect.WithGRPCWeb(), bearer(key))
	ctx := context.Background()
	user := p.id + "-api"

	_, err = events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{
		{EventId: "ok", UserId: user, Type: "cart_add", Ts: timestamppb.Now()},
		{UserId: user, Type: "cart_add", Ts: timestamppb.Now()},
	}}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.Contains(t, err.Error(), "events[1].event_id")

	resp, err := events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: []*omegav1.Event{
		{EventId: user + "-1", UserId: user, Type: "cart_add", ItemId: "sku-7", Ts: timestamppb.Now()},
	}}))
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.Msg.GetAccepted())
	p.waitDeliveries(1)
	require.Equal(t, "The item sku-7 is waiting in your cart.", p.receiver.Deliveries()[0].Message.Body)

	var got *omegav1.Reach
	require.Eventually(t, func() bool {
		lr, err := reaches.List(ctx, connect.NewRequest(&omegav1.ListRequest{UserId: user}))
		require.NoError(t, err)
		if len(lr.Msg.GetReaches()) != 1 || lr.Msg.GetReaches()[0].GetStatus() != "sent" {
			return false
		}
		got = lr.Msg.GetReaches()[0]
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "reach/cart-add/"+user+"/"+user+"-1", got.GetReachId())
	require.Len(t, got.GetAudit(), 6) // received, matched, routed, filtered, dispatched, completed

	gr, err := reaches.Get(ctx, connect.NewRequest(&omegav1.GetRequest{ReachId: got.GetReachId()}))
	require.NoError(t, err)
	require.Equal(t, "sent", gr.Msg.GetReach().GetStatus())

	_, err = reaches.List(ctx, connect.NewRequest(&omegav1.ListRequest{}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.Contains(t, err.Error(), "user_id")

	// Trigger: the same idempotency key twice is one reach and one delivery.
	for i, wantCreated := range []bool{true, false} {
		tr, err := reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: user, JourneyId: "cart-reminder", IdempotencyKey: "promo-1"}))
		require.NoError(t, err, "trigger %d", i)
		require.Equal(t, wantCreated, tr.Msg.GetCreated())
		require.Equal(t, "reach/api/"+user+"/promo-1", tr.Msg.GetReachId())
	}
	p.waitDeliveries(2)
	_, err = reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: user, JourneyId: "nope", IdempotencyKey: "k"}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.Contains(t, err.Error(), "journey_id")
	time.Sleep(500 * time.Millisecond)
	require.Len(t, p.receiver.Deliveries(), 2)

	// The metrics saw it: one event consumed and matched, one start from each side, two sends
	// (the first sends of their runs), the API calls by code.
	d := metricDeltas(before, scrape(t),
		`omega_cep_events_total{outcome="processed"}`, `omega_cep_matches_total{mode="live",rule="cart-add"}`,
		`omega_workflow_starts_total{origin="cep",result="started"}`, `omega_workflow_starts_total{origin="api",result="started"}`,
		`omega_workflow_starts_total{origin="api",result="duplicate"}`, `omega_sends_total{channel="webhook",outcome="sent"}`,
		`omega_filter_verdicts_total{filter="none",verdict="pass"}`, `omega_cep_event_to_match_seconds_count`,
		`omega_match_to_dispatch_seconds_count{channel="webhook"}`,
		`omega_api_requests_total{code="invalid_argument",procedure="/omega.v1.EventService/Ingest"}`,
		`omega_api_requests_total{code="ok",procedure="/omega.v1.EventService/Ingest"}`)
	for series, want := range map[string]float64{
		`omega_cep_events_total{outcome="processed"}`: 1, `omega_cep_matches_total{mode="live",rule="cart-add"}`: 1,
		`omega_workflow_starts_total{origin="cep",result="started"}`: 1, `omega_workflow_starts_total{origin="api",result="started"}`: 1,
		`omega_workflow_starts_total{origin="api",result="duplicate"}`: 1, `omega_sends_total{channel="webhook",outcome="sent"}`: 2,
		`omega_filter_verdicts_total{filter="none",verdict="pass"}`: 2, `omega_cep_event_to_match_seconds_count`: 1,
		`omega_match_to_dispatch_seconds_count{channel="webhook"}`:                                    2,
		`omega_api_requests_total{code="invalid_argument",procedure="/omega.v1.EventService/Ingest"}`: 1,
		`omega_api_requests_total{code="ok",procedure="/omega.v1.EventService/Ingest"}`:               1,
	} {
		require.Equal(t, want, d[series], series)
	}
}

func kinds(r audit.Reach) []string {
	var out []string
	for _, rec := range r.Records {
		out = append(out, rec.Kind)
	}
	return out
}
