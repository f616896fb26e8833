package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/require"
	temporalmocks "go.temporal.io/sdk/mocks"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/console"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/versioned"
	"github.com/omegareach/omega/journey"
)

const (
	readKey   = "omk_console-read"
	ingestKey = "omk_console-ingest"
)

var keys = apikey.Static{
	readKey:   {ID: "r", Name: "console-read", Scopes: []string{apikey.ScopeRead}},
	ingestKey: {ID: "i", Name: "console-ingest", Scopes: []string{apikey.ScopeIngest}},
}

// memSpecs is a spec store in memory: every version of each ID, the last one active.
type memSpecs[T any] struct {
	mu   sync.Mutex
	meta func(T) (string, int)
	all  map[string][]T
	ids  []string
}

func newSpecs[T any](meta func(T) (string, int), vs ...T) *memSpecs[T] {
	m := &memSpecs[T]{meta: meta, all: map[string][]T{}}
	for _, v := range vs {
		id, _ := meta(v)
		if _, ok := m.all[id]; !ok {
			m.ids = append(m.ids, id)
		}
		m.all[id] = append(m.all[id], v)
	}
	return m
}

func (m *memSpecs[T]) Validate(T) error { return nil }
func (m *memSpecs[T]) Apply(context.Context, T) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (m *memSpecs[T]) Draft(context.Context, T) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (m *memSpecs[T]) Activate(context.Context, string, int) error { return nil }
func (m *memSpecs[T]) Disable(context.Context, string) error       { return nil }
func (m *memSpecs[T]) Get(ctx context.Context, id string) (T, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.all[id]
	if len(vs) == 0 {
		var z T
		return z, versioned.ErrNotFound
	}
	return vs[len(vs)-1], nil
}
func (m *memSpecs[T]) Version(ctx context.Context, id string, version int) (T, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.all[id] {
		if _, n := m.meta(v); n == version {
			return v, nil
		}
	}
	var z T
	return z, versioned.ErrNotFound
}
func (m *memSpecs[T]) List(context.Context) ([]T, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []T
	for _, id := range m.ids {
		out = append(out, m.all[id][len(m.all[id])-1])
	}
	return out, nil
}

// consoleServer serves the API and the console as `omega api` does (console.Mount).
func consoleServer(t testing.TB, store *audit.Store, journeys []journey.Journey, rules []cep.Rule, now func() time.Time) *httptest.Server {
	t.Helper()
	h, err := api.NewHandler(api.Config{Producer: saramamocks.NewSyncProducer(t, nil), Temporal: &temporalmocks.Client{}, Audit: store,
		Journeys: func(string) bool { return true }, Keys: keys, DefaultRate: 10000,
		JourneyStore: newSpecs(func(j journey.Journey) (string, int) { return j.ID, j.Version }, journeys...),
		RuleStore:    newSpecs(func(r cep.Rule) (string, int) { return r.ID, r.Version }, rules...),
		Log:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	h, err = console.Mount(h, console.Config{TemporalUI: "http://temporal-ui.test:8233", Log: slog.New(slog.DiscardHandler), Now: now})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// browser is a client that keeps cookies and does not follow redirects, posting forms as a
// browser does (with Origin).
func browser(t testing.TB, srv *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// formAnswer is what a form post answered (its body read and closed).
type formAnswer struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

func (a formAnswer) Cookies() []*http.Cookie { return a.cookies }

func postForm(t testing.TB, c *http.Client, srv *httptest.Server, path string, form url.Values, origin string) formAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return formAnswer{StatusCode: resp.StatusCode, Header: resp.Header, cookies: resp.Cookies()}
}

func signIn(t testing.TB, srv *httptest.Server, key string) *http.Client {
	t.Helper()
	c := browser(t, srv)
	resp := postForm(t, c, srv, "/console/login", url.Values{"key": {key}}, srv.URL)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/console/journeys", resp.Header.Get("Location"))
	return c
}

func get(t testing.TB, c *http.Client, srv *httptest.Server, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func mustJourney(t testing.TB, version int, yaml string) journey.Journey {
	t.Helper()
	j, err := journey.Parse([]byte(yaml))
	require.NoError(t, err)
	j.Version = version
	return j
}

// splitJourney is the scenario's journey: a split between a push and an SMS path, with a
// control group, a wait for the push to be opened, and a goal.
const splitJourney = `
id: %s
description: split test
templates:
  t: {body: hello}
steps:
  - id: ab
    split: {paths: [{name: a, weight: 45, next: push}, {name: b, weight: 45, next: sms}], holdout: 10}
  - id: push
    send: {channel: push, template: t}
  - id: wait_open
    wait_for: {events: [push_open], timeout: 24h, then: end, on_timeout: sms}
  - id: sms
    send: {channel: sms, template: t}
  - id: paid
    goal: {events: [order_paid]}
`

// seed writes n reaches of journey jid through rules (round robin) in the hour before at, spread
// over users users; every 7th match is a shadow rule's. It returns how many records it wrote.
func seed(t testing.TB, store *audit.Store, jid string, rules []string, users, n int, at time.Time) int {
	t.Helper()
	ctx := context.Background()
	var batch []audit.Record
	total := 0
	flush := func() {
		_, err := store.Append(ctx, batch...)
		require.NoError(t, err)
		total += len(batch)
		batch = batch[:0]
	}
	for i := range n {
		rule := rules[i%len(rules)]
		user := fmt.Sprintf("%s-u%d", jid, i%users)
		id := fmt.Sprintf("reach/%s/%s/%d", rule, user, i)
		t0 := at.Add(-time.Duration(i%86000) * time.Second)
		version := 1 + i%2
		k := 0
		rec := func(step, kind, outcome, reason, ch string) {
			k++
			batch = append(batch, audit.Record{ReachID: id, Step: step, Kind: kind, Outcome: outcome, Reason: reason, Channel: ch, UserID: user,
				RuleID: rule, JourneyID: jid, JourneyVersion: version, At: t0.Add(time.Duration(k) * time.Millisecond)})
		}
		if i%7 == 6 {
			batch = append(batch, audit.Record{ReachID: id, Step: "match", Kind: audit.KindShadowMatched, UserID: user, RuleID: rule, JourneyID: jid, At: t0})
			continue
		}
		rec("match", audit.KindMatched, "", "rule matched", "")
		rec("route", audit.KindRouted, fmt.Sprintf("v%d", version), "", "")
		path := []string{"a", "b", "holdout", "a", "b"}[i%5]
		rec("ab", audit.KindSplit, path, "split ab: path "+path, "")
		switch {
		case path == "holdout":
			rec("end", audit.KindCompleted, "completed", "", "")
		case i%11 == 3:
			step := map[string]string{"a": "push", "b": "sms"}[path]
			rec(step, audit.KindFiltered, "drop", "drop by fatigue: 3 messages in 24h", step)
			rec(step, audit.KindSuppressed, "drop", "drop by fatigue: 3 messages in 24h", step)
			rec("end", audit.KindCompleted, "suppressed", "", "")
		case path == "a":
			rec("push", audit.KindFiltered, "pass", "pass", "push")
			rec("push", audit.KindDispatched, "sent", "provider 200", "push")
			if i%3 == 0 {
				rec("wait_open", audit.KindResponded, "push_open", "response push_open", "")
				if i%2 == 0 {
					rec("goal", audit.KindConverted, "order_paid", "order o1", "")
				}
				rec("end", audit.KindCompleted, "sent", "", "")
			} else {
				rec("wait_open", audit.KindTimedOut, "timeout", "no response: push_open within 24h", "")
				rec("sms", audit.KindFiltered, "drop", "drop by consent: sms refused", "sms")
				rec("sms", audit.KindSuppressed, "drop", "drop by consent: sms refused", "sms")
				rec("end", audit.KindCompleted, "sent", "", "")
			}
		default:
			rec("sms", audit.KindFiltered, "pass", "pass", "sms")
			rec("sms", audit.KindDispatched, "sent", "provider 200", "sms")
			if i%4 == 0 {
				rec("goal", audit.KindConverted, "order_paid", "order o2", "")
			}
		}
		if len(batch) >= 5000 {
			flush()
		}
	}
	flush()
	return total
}
