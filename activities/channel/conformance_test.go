package channel_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/channel/channeltest"
	"github.com/omegareach/omega/profile"
)

func addressed() channel.Message {
	m := testMessage()
	m.To = profile.Addresses{Phone: "+4915112345678", Push: []profile.PushToken{{Token: "tok-android", Platform: "android"}}}
	return m
}

func TestConformance(t *testing.T) {
	client := func(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }
	ios := addressed()
	ios.To.Push = []profile.PushToken{{Token: "tok-ios", Platform: "ios"}}
	both := addressed()
	both.To.Push = append(both.To.Push, profile.PushToken{Token: "tok-ios", Platform: "ios"})
	covered := map[string]bool{}

	for _, tt := range []struct {
		name string
		new  func(t *testing.T, url string, timeout time.Duration) channel.Channel
		msg  channel.Message
	}{
		{"webhook", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			return newWebhook(t, url, timeout)
		}, addressed()},
		{"push fcm", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewPush(channel.PushConfig{FCMURL: url, FCMProject: "p", Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, addressed()},
		{"push apns", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewPush(channel.PushConfig{APNsURL: url, APNsTopic: "com.example", Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, ios},
		{"push two devices", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewPush(channel.PushConfig{FCMURL: url, FCMProject: "p", APNsURL: url, Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, both},
		{"sms json", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewSMS(channel.SMSConfig{URL: url, Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, addressed()},
		{"sms form", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewSMS(channel.SMSConfig{URL: url, Form: true, Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, addressed()},
		{"slack", func(t *testing.T, url string, timeout time.Duration) channel.Channel {
			c, err := channel.NewSlack(channel.SlackConfig{URL: url, Client: client(timeout)})
			require.NoError(t, err)
			return c
		}, addressed()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			channeltest.Run(t, func(t *testing.T, url string, timeout time.Duration) channel.Channel {
				ch := tt.new(t, url, timeout)
				covered[ch.Name()] = true
				return ch
			}, tt.msg)
		})
	}
	// Every declared channel has its row here; the in-app inbox, which stores rather than calls a
	// provider, is held to the same contract by api's TestInbox against PostgreSQL.
	for _, name := range channel.Builtin().Names() {
		if name != "inapp" {
			require.True(t, covered[name], "channel %q is declared but has no conformance row", name)
		}
	}
}
