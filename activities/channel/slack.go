package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/omegareach/omega/activities/plugin"
)

// The slack channel: the whole plug-in is this file and its row in conformance_test.go.
func init() {
	builtin.MustRegister(Spec{
		Name: "slack",
		Doc:  "a message to a team's chat through a Slack incoming webhook (Mattermost takes the same): tell people, not users",
		Fields: []plugin.Field{
			{Env: "OMEGA_SLACK_URL", Secret: true,
				Doc: "the incoming webhook (https://hooks.slack.com/services/...); the webhook URL when empty"},
		},
		New: func(s plugin.Values, _ Deps) (Channel, error) {
			u := s.Get("OMEGA_SLACK_URL")
			if u == "" {
				return webhookFrom(s, "slack") // the local receiver stands in
			}
			return NewSlack(SlackConfig{URL: u})
		},
	})
}

// SlackConfig configures the slack channel.
type SlackConfig struct {
	// URL is the incoming webhook; it holds the credential, so it comes from the environment
	// (or a file), never from journeys.
	URL string
	// Timeout of one call; 10s when zero.
	Timeout time.Duration
	Client  *http.Client
}

// Slack posts a reach's message to the chat channel an incoming webhook is bound to: for journeys
// whose step tells a team (a big cart left behind, a VIP's failed payment) rather than the user.
//
// Slack does not deduplicate on the idempotency key: the key is sent (Idempotency-Key) and
// printed in the message, but a retry after an answer that got lost can post a second time.
type Slack struct{ cfg SlackConfig }

// NewSlack builds a slack channel.
func NewSlack(cfg SlackConfig) (*Slack, error) {
	if cfg.URL == "" {
		return nil, errors.New("slack: url is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &Slack{cfg: cfg}, nil
}

func (s *Slack) Name() string { return "slack" }

// Send posts the title in bold, the body, and a context line naming the user and the reach.
func (s *Slack) Send(ctx context.Context, m Message) (Result, error) {
	var text strings.Builder
	if m.Title != "" {
		fmt.Fprintf(&text, "*%s*\n", slackEscape(m.Title))
	}
	text.WriteString(slackEscape(m.Body))
	fmt.Fprintf(&text, "\n_user %s · %s_", slackEscape(m.UserID), slackEscape(m.IdempotencyKey))
	body, _ := json.Marshal(map[string]string{"text": text.String()})
	req, err := newRequest(ctx, s.cfg.URL, body, "application/json", m, "slack")
	if err != nil {
		return Result{}, err
	}
	r, err := post(s.cfg.Client, req)
	if err == nil && r.ProviderMessageID == "" {
		// Slack answers a bare "ok": the key is the message's only reference.
		r.ProviderMessageID = "slack-" + m.IdempotencyKey
	}
	return r, err
}

// slackEscape escapes what Slack's markup reads as control characters.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
