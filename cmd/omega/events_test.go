package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	saramamocks "github.com/IBM/sarama/mocks"
	"github.com/stretchr/testify/require"
	temporalmocks "go.temporal.io/sdk/mocks"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/internal/apikey"
)

// TestEventsSendNamesBadLines: a file with bad events is refused by the API batch by batch; the
// CLI names every bad line of the refused batch (not events[i]) and how far the file got.
func TestEventsSendNamesBadLines(t *testing.T) {
	producer := saramamocks.NewSyncProducer(t, nil)
	h, err := api.NewHandler(api.Config{Producer: producer, Temporal: &temporalmocks.Client{}, Audit: audit.NewStore(nil),
		Journeys: func(string) bool { return true }, Keys: apikey.Static{"omk_cli": {ID: "c1", Name: "cli", Scopes: []string{apikey.ScopeAdmin}}},
		Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	cfg := config{apiURL: srv.URL, apiKey: "omk_cli"}

	var lines []string
	for i := range 1003 { // a first batch of 1,000 events, then one of 3 with two bad ones
		switch i {
		case 1001:
			lines = append(lines, `{"event_id": "e1001", "type": "cart_add", "ts": "2026-12-02T10:00:00Z"}`) // no user_id
		case 1002:
			lines = append(lines, "", `{"event_id": "", "user_id": "u1", "type": "cart_add", "ts": "2026-12-02T10:00:00Z"}`)
		default:
			lines = append(lines, fmt.Sprintf(`{"event_id": "e%d", "user_id": "u1", "type": "cart_add", "item_id": "i1", "ts": "2026-12-02T10:00:00Z"}`, i))
		}
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	for range 1000 { // the first batch
		producer.ExpectSendMessageAndSucceed()
	}
	stderr := captureStderr(t, func() {
		err = runEvents(context.Background(), cfg, []string{"send", "-f", path}, &bytes.Buffer{})
	})
	require.ErrorContains(t, err, "line 1002: user_id: required")
	require.ErrorContains(t, err, "(and 1 more bad line above)")
	require.ErrorContains(t, err, "the batch of lines 1001-1004 was refused whole, nothing of it sent (events before it accepted: 1000); fix the lines and send the file from line 1001")
	require.Contains(t, stderr, "line 1002: user_id: required")
	require.Contains(t, stderr, "line 1004: event_id: required") // line 1003 is blank
	require.NotContains(t, stderr, "events[")

	// Lines that are not events: the batch they are in is not sent, and every one is named.
	var mixed []string
	for i := range 1010 {
		switch i {
		case 1004:
			mixed = append(mixed, "this is not json")
		case 1007:
			mixed = append(mixed, `{"event_id": "x", "user": "u1"}`) // no field user
		default:
			mixed = append(mixed, fmt.Sprintf(`{"event_id": "m%d", "user_id": "u1", "type": "cart_add", "item_id": "i1", "ts": "2026-12-02T10:00:00Z"}`, i))
		}
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(mixed, "\n")+"\n"), 0o600))
	for range 1000 { // the first batch; the second (lines 1001-1010) holds the bad lines
		producer.ExpectSendMessageAndSucceed()
	}
	stderr = captureStderr(t, func() {
		err = runEvents(context.Background(), cfg, []string{"send", "-f", path}, &bytes.Buffer{})
	})
	require.ErrorContains(t, err, "line 1005: not an event: proto: syntax error")
	require.ErrorContains(t, err, "(and 1 more such line above): nothing from line 1001 on was sent (events before it accepted: 1000); fix the lines and send the file from line 1001")
	require.Contains(t, stderr, "line 1008: not an event: proto:")
	require.Contains(t, stderr, `unknown field "user"`)
	require.NotContains(t, stderr, "\u00a0")

	// A line too long to be an event is named like any other; it is read past, not held.
	long := []string{mixed[0], mixed[1], `{"event_id": "` + strings.Repeat("x", 1_200_000) + `"}`, mixed[3]}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(long, "\n")), 0o600)) // no newline at the end
	stderr = captureStderr(t, func() {
		err = runEvents(context.Background(), cfg, []string{"send", "-f", path}, &bytes.Buffer{})
	})
	require.ErrorContains(t, err, "line 3: not an event: longer than 1048576 bytes (an event is at most 65536): nothing from line 1 on was sent")
	require.Equal(t, "line 3: not an event: longer than 1048576 bytes (an event is at most 65536)\n", stderr, "the line is named, not printed")

	// Events too large to go 1,000 to a call go in smaller batches (the API takes 4 MiB a call).
	var big []string
	for i := range 1200 {
		big = append(big, fmt.Sprintf(`{"event_id": "b%d", "user_id": "u1", "type": "view", "item_id": "i1", "ts": "2026-12-02T10:00:00Z", "attrs": {"note": %q}}`,
			i, strings.Repeat("n", 6000)))
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(big, "\n")+"\n"), 0o600))
	for range 1200 {
		producer.ExpectSendMessageAndSucceed()
	}
	var out1 bytes.Buffer
	require.NoError(t, runEvents(context.Background(), cfg, []string{"send", "-f", path}, &out1))
	require.Equal(t, "accepted 1200 events\n", out1.String())

	// --check names every bad line of the file, malformed or refused by the API, and sends nothing.
	checked := []string{mixed[0], "not json", mixed[2], `{"event_id": "", "user_id": "u1", "type": "cart_add", "ts": "2026-12-02T10:00:00Z"}`, mixed[4],
		`{"event_id": "nouser", "type": "cart_add", "ts": "2026-12-02T10:00:00Z"}`}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(checked, "\n")+"\n"), 0o600))
	stderr = captureStderr(t, func() {
		err = runEvents(context.Background(), cfg, []string{"send", "-f", path, "--check"}, &bytes.Buffer{})
	})
	require.EqualError(t, err, "3 bad lines (listed above), 3 events fit to send; nothing was sent (--check)")
	require.Regexp(t, `(?s)line 2: not an event: .*\nline 4: event_id: required\nline 6: user_id: required`, stderr)
	require.NoError(t, os.WriteFile(path, []byte(mixed[0]+"\n"), 0o600))
	var okOut bytes.Buffer
	require.NoError(t, runEvents(context.Background(), cfg, []string{"send", "-f", path, "--check"}, &okOut))
	require.Equal(t, "1 event fit to send; nothing was sent (--check)\n", okOut.String()) // the producer saw nothing

	// Fields given as flags with -f are refused, not ignored.
	err = runEvents(context.Background(), cfg, []string{"send", "-f", path, "--user", "x", "--ts", "2026-12-01T09:30:00Z"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "--ts, --user: with -f, every field comes from the file's lines")

	// One event, dated with --ts.
	producer.ExpectSendMessageWithCheckerFunctionAndSucceed(func(b []byte) error {
		if !bytes.Contains(b, []byte(`"ts":"2026-12-01T09:30:00Z"`)) {
			return fmt.Errorf("not dated --ts: %s", b)
		}
		return nil
	})
	var out bytes.Buffer
	require.NoError(t, runEvents(context.Background(), cfg, []string{"send", "--user", "u1", "--type", "cart_add", "--item", "i1",
		"--ts", "2026-12-01T09:30:00Z"}, &out))
	require.Contains(t, out.String(), "accepted 1 event")
	err = runEvents(context.Background(), cfg, []string{"send", "--user", "u1", "--type", "cart_add", "--ts", "yesterday"}, &out)
	require.ErrorContains(t, err, "--ts: want a time such as")
	require.NoError(t, producer.Close())
}

// captureStderr runs f with os.Stderr redirected and returns what it wrote.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		done <- b.Bytes()
	}()
	f()
	os.Stderr = old
	require.NoError(t, w.Close())
	return string(<-done)
}

func TestMoreAbove(t *testing.T) {
	require.Empty(t, moreAbove(1, 1, "bad line"))
	require.Equal(t, " (and 1 more bad line above)", moreAbove(2, 2, "bad line"))
	require.Equal(t, " (and 4 more bad lines above)", moreAbove(5, 5, "bad line"))
	require.Equal(t, " (1000 bad lines in all, the first 100 listed above)", moreAbove(100, 1000, "bad line"))
}
