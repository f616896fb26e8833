package channel

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/omegareach/omega/activities/plugin"
)

func init() {
	builtin.MustRegister(Spec{
		Name: "sms",
		Doc:  "one text message to the user's phone through an HTTP SMS provider (the webhook URL without one)",
		Fields: []plugin.Field{
			{Env: "OMEGA_SMS_URL", Doc: "the provider's send endpoint"},
			{Env: "OMEGA_SMS_TOKEN", Secret: true, Doc: "bearer token"},
			{Env: "OMEGA_SMS_SENDER", Default: "Omega", Doc: "sender ID or number"},
			{Env: "OMEGA_SMS_FORM", Doc: "a form body instead of JSON when 1"},
		},
		New: func(s plugin.Values, _ Deps) (Channel, error) {
			u := s.Get("OMEGA_SMS_URL")
			if u == "" {
				return webhookFrom(s, "sms")
			}
			return NewSMS(SMSConfig{URL: u, Form: s.Get("OMEGA_SMS_FORM") == "1", Token: s.Get("OMEGA_SMS_TOKEN"),
				DefaultSender: s.Get("OMEGA_SMS_SENDER")})
		},
	})
}

// SMSConfig configures the SMS channel: an HTTP provider taking a form or a JSON body with to,
// from and body fields (the shape most SMS APIs share).
type SMSConfig struct {
	Name string // "sms" when empty
	URL  string
	// Form posts application/x-www-form-urlencoded instead of JSON.
	Form bool
	// Token is sent as a bearer token.
	Token string
	// Senders maps a country calling code prefix ("+49", "+1") to the sender ID or number used
	// there; the longest matching prefix wins, else DefaultSender.
	Senders       map[string]string
	DefaultSender string
	Timeout       time.Duration
	Client        *http.Client
}

// SMS sends one text message to the user's phone; a user without one fails permanently.
type SMS struct{ cfg SMSConfig }

// NewSMS builds an SMS channel.
func NewSMS(cfg SMSConfig) (*SMS, error) {
	if cfg.Name == "" {
		cfg.Name = "sms"
	}
	if cfg.URL == "" {
		return nil, errors.New("sms: url is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &SMS{cfg: cfg}, nil
}

func (s *SMS) Name() string { return s.cfg.Name }

// Sender returns the sender for a phone number.
func (s *SMS) Sender(phone string) string {
	prefixes := make([]string, 0, len(s.cfg.Senders))
	for p := range s.cfg.Senders {
		prefixes = append(prefixes, p)
	}
	sort.Slice(prefixes, func(i, j int) bool { return len(prefixes[i]) > len(prefixes[j]) })
	for _, p := range prefixes {
		if strings.HasPrefix(phone, p) {
			return s.cfg.Senders[p]
		}
	}
	return s.cfg.DefaultSender
}

func (s *SMS) Send(ctx context.Context, m Message) (Result, error) {
	to := m.To.Phone
	if to == "" {
		return Result{}, &PermanentError{errors.New("the user has no phone number")}
	}
	text := m.Body
	if m.Title != "" {
		text = m.Title + ": " + m.Body
	}
	fields := map[string]string{"to": to, "from": s.Sender(to), "body": text, "reference": m.IdempotencyKey}
	var body []byte
	ctype := "application/json"
	if s.cfg.Form {
		v := url.Values{}
		for k, x := range fields {
			v.Set(k, x)
		}
		body, ctype = []byte(v.Encode()), "application/x-www-form-urlencoded"
	} else {
		body, _ = json.Marshal(fields)
	}
	req, err := newRequest(ctx, s.cfg.URL, body, ctype, m, s.cfg.Name)
	if err != nil {
		return Result{}, err
	}
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	return post(s.cfg.Client, req)
}
