package channel

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/profile"
)

func init() {
	builtin.MustRegister(Spec{
		Name: "push",
		Doc:  "one notification per device of the user, through FCM or APNs (the webhook URL without either)",
		Fields: []plugin.Field{
			{Env: "OMEGA_FCM_URL", Doc: "FCM base URL (https://fcm.googleapis.com)"},
			{Env: "OMEGA_FCM_PROJECT", Doc: "FCM project ID"},
			{Env: "OMEGA_FCM_TOKEN", Secret: true, Doc: "FCM OAuth bearer token"},
			{Env: "OMEGA_APNS_URL", Doc: "APNs base URL (https://api.push.apple.com)"},
			{Env: "OMEGA_APNS_TOPIC", Doc: "the app's bundle ID"},
			{Env: "OMEGA_APNS_TOKEN", Secret: true, Doc: "APNs provider JWT"},
		},
		New: func(s plugin.Values, _ Deps) (Channel, error) {
			fcm, apns := s.Get("OMEGA_FCM_URL"), s.Get("OMEGA_APNS_URL")
			if fcm == "" && apns == "" {
				return webhookFrom(s, "push")
			}
			// Credentials come from the environment, never from rules or journeys.
			return NewPush(PushConfig{FCMURL: fcm, FCMProject: s.Get("OMEGA_FCM_PROJECT"), FCMToken: s.Get("OMEGA_FCM_TOKEN"),
				APNsURL: apns, APNsTopic: s.Get("OMEGA_APNS_TOPIC"), APNsToken: s.Get("OMEGA_APNS_TOKEN")})
		},
	})
}

// PushConfig configures the push channel: Android and web tokens go to an FCM HTTP v1-style
// endpoint, iOS tokens to an APNs-style endpoint. Point the URLs at the real providers or at the
// local receiver.
type PushConfig struct {
	Name string // "push" when empty
	// FCMURL is the FCM base URL (https://fcm.googleapis.com); FCMProject the project ID;
	// FCMToken the OAuth bearer token.
	FCMURL, FCMProject, FCMToken string
	// APNsURL is the APNs base URL (https://api.push.apple.com); APNsTopic the app's bundle ID;
	// APNsToken the provider JWT.
	APNsURL, APNsTopic, APNsToken string
	Timeout                       time.Duration // 10s when zero
	Client                        *http.Client
}

// Push sends one notification per device of the user. A user without a push token fails
// permanently (so a journey falls back to its fallback channel).
type Push struct{ cfg PushConfig }

// NewPush builds a push channel.
func NewPush(cfg PushConfig) (*Push, error) {
	if cfg.Name == "" {
		cfg.Name = "push"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.FCMURL == "" && cfg.APNsURL == "" {
		return nil, errors.New("push: an FCM or an APNs URL is required")
	}
	if cfg.FCMURL != "" && cfg.FCMProject == "" {
		return nil, errors.New("push: fcm project is required with the FCM URL")
	}
	return &Push{cfg: cfg}, nil
}

func (p *Push) Name() string { return p.cfg.Name }

// Send delivers to every token, each device with its own idempotency key (the message's key plus
// a hash of the token). The message counts as sent when any device accepted it: retrying would
// post again to the devices that have it, and not every provider deduplicates. Only when no
// device accepted is the failure returned (permanent when every device refused for good).
func (p *Push) Send(ctx context.Context, m Message) (Result, error) {
	if len(m.To.Push) == 0 {
		return Result{}, &PermanentError{errors.New("the user has no push token")}
	}
	var res Result
	var errs []error
	sent := 0
	for _, t := range m.To.Push {
		dm := m
		dm.IdempotencyKey = m.IdempotencyKey + "/" + tokenID(t.Token)
		r, err := p.sendOne(ctx, dm, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s device %s: %w", t.Platform, tokenID(t.Token), err))
			continue
		}
		sent++
		res = r
	}
	if sent > 0 {
		return res, nil
	}
	err := errors.Join(errs...)
	if allPermanent(errs) {
		return res, &PermanentError{err}
	}
	// Retry after the longest wait any device's provider asked for.
	var wait time.Duration
	for _, e := range errs {
		var re *RetryableError
		if errors.As(e, &re) {
			wait = max(wait, re.RetryAfter)
		}
	}
	return res, &RetryableError{Err: err, RetryAfter: wait}
}

func (p *Push) sendOne(ctx context.Context, m Message, t profile.PushToken) (Result, error) {
	switch t.Platform {
	case "ios":
		if p.cfg.APNsURL == "" {
			return Result{}, &PermanentError{errors.New("no APNs endpoint configured")}
		}
		body, _ := json.Marshal(map[string]any{"aps": map[string]any{"alert": map[string]string{"title": m.Title, "body": m.Body}},
			"data": m.Data})
		req, err := newRequest(ctx, strings.TrimSuffix(p.cfg.APNsURL, "/")+"/3/device/"+t.Token, body, "application/json", m, p.cfg.Name)
		if err != nil {
			return Result{}, err
		}
		req.Header.Set("apns-id", uuidOf(m.IdempotencyKey)) // APNs deduplicates on it
		req.Header.Set("apns-push-type", "alert")
		if p.cfg.APNsTopic != "" {
			req.Header.Set("apns-topic", p.cfg.APNsTopic)
		}
		if p.cfg.APNsToken != "" {
			req.Header.Set("authorization", "bearer "+p.cfg.APNsToken)
		}
		return post(p.cfg.Client, req)
	default: // android, web
		if p.cfg.FCMURL == "" {
			return Result{}, &PermanentError{errors.New("no FCM endpoint configured")}
		}
		data := map[string]string{"idempotency_key": m.IdempotencyKey, "reach_id": m.ReachID}
		for k, v := range m.Data {
			data[k] = v
		}
		body, _ := json.Marshal(map[string]any{"message": map[string]any{"token": t.Token,
			"notification": map[string]string{"title": m.Title, "body": m.Body}, "data": data}})
		url := strings.TrimSuffix(p.cfg.FCMURL, "/") + "/v1/projects/" + p.cfg.FCMProject + "/messages:send"
		req, err := newRequest(ctx, url, body, "application/json", m, p.cfg.Name)
		if err != nil {
			return Result{}, err
		}
		if p.cfg.FCMToken != "" {
			req.Header.Set("Authorization", "Bearer "+p.cfg.FCMToken)
		}
		return post(p.cfg.Client, req)
	}
}

func allPermanent(errs []error) bool {
	for _, e := range errs {
		if !IsPermanent(e) {
			return false
		}
	}
	return true
}

// tokenID names a device in keys and logs without exposing its token.
func tokenID(token string) string {
	h := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x", h[:6])
}

// uuidOf derives a stable UUID from a key (APNs wants its apns-id as a UUID).
func uuidOf(key string) string {
	h := sha256.Sum256([]byte(key))
	h[6] = h[6]&0x0f | 0x50 // version 5-style, name-based
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
