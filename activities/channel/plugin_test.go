package channel_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/store"
)

type nopInbox struct{ store.Inbox }

// The worker's channels come from the declarations alone: a provider channel without its
// provider's settings posts to the webhook URL under its own name, with one its provider.
func TestBuildBuiltin(t *testing.T) {
	for _, tt := range []struct {
		name     string
		settings plugin.Values
		want     map[string]string // channel -> Go type
	}{
		{name: "defaults: push and sms post to the webhook URL", want: map[string]string{
			"webhook": "*channel.Webhook", "push": "*channel.Webhook", "sms": "*channel.Webhook", "slack": "*channel.Webhook", "inapp": "*channel.Inbox"}},
		{name: "providers configured", settings: plugin.Values{"OMEGA_SMS_URL": "https://sms.example/send", "OMEGA_FCM_URL": "https://fcm.example", "OMEGA_FCM_PROJECT": "p",
			"OMEGA_SLACK_URL": "https://hooks.slack.example/services/T/B/x"},
			want: map[string]string{"webhook": "*channel.Webhook", "push": "*channel.Push", "sms": "*channel.SMS", "slack": "*channel.Slack", "inapp": "*channel.Inbox"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := channel.Build(channel.Builtin(), tt.settings, channel.Deps{Inbox: nopInbox{}}, nil)
			require.NoError(t, err)
			for name, typ := range tt.want {
				ch, ok := reg.Get(name)
				require.True(t, ok, name)
				require.Equal(t, name, ch.Name())
				require.Equal(t, typ, typeName(ch), name)
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	_, err := channel.Build(channel.Builtin(), nil, channel.Deps{}, nil)
	require.ErrorContains(t, err, "channel inapp: an inbox store is required")

	reg := channel.Builtin()
	err = reg.Register(channel.Spec{Name: "webhook", New: func(plugin.Values, channel.Deps) (channel.Channel, error) { return nil, nil }})
	require.ErrorContains(t, err, `"webhook" registered twice`)

	liar := &plugin.Registry[channel.Channel, channel.Deps]{}
	liar.MustRegister(channel.Spec{Name: "pigeon", New: func(s plugin.Values, _ channel.Deps) (channel.Channel, error) {
		return channel.NewWebhook(channel.WebhookConfig{URL: "https://example.com"})
	}})
	_, err = channel.Build(liar, nil, channel.Deps{}, nil)
	require.ErrorContains(t, err, `channel pigeon: built a channel named "webhook"`)
}

func typeName(ch channel.Channel) string {
	switch ch.(type) {
	case *channel.Webhook:
		return "*channel.Webhook"
	case *channel.Push:
		return "*channel.Push"
	case *channel.SMS:
		return "*channel.SMS"
	case *channel.Inbox:
		return "*channel.Inbox"
	case *channel.Slack:
		return "*channel.Slack"
	}
	return "?"
}
