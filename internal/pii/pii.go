// Package pii keeps personal data out of logs: phone numbers, email addresses and push tokens are
// masked wherever they appear in a log record (messages, string attributes, errors), so a
// provider's answer quoting a number or a token cannot leak it into log storage.
package pii

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

var (
	email = regexp.MustCompile(`([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})`)
	// E.164 and the usual ways of writing it: +49 151 1234-5678.
	phone = regexp.MustCompile(`\+\d[\d \-().]{6,18}\d`)
	// Push tokens: APNs tokens are 64 hex digits, FCM tokens 100+ characters of [A-Za-z0-9_:-].
	token = regexp.MustCompile(`[A-Za-z0-9_\-:]{40,}`)
	// Attribute keys whose values are personal data as a whole.
	sensitiveKeys = []string{"phone", "email", "token", "password", "secret", "authorization", "msisdn", "recipient", "address"}
	// URL-encoded forms (a URL quoted in an HTTP error): %2B49151..., name%40example.com.
	encPhone = regexp.MustCompile(`%2[Bb]\d{7,15}`)
	encEmail = regexp.MustCompile(`([A-Za-z0-9._\-])[A-Za-z0-9._\-]*%40([A-Za-z0-9.\-]+\.[A-Za-z]{2,})`)
	// API keys are masked whatever their letters.
	apiKey = regexp.MustCompile(`omk_[A-Za-z0-9_\-]{8,}`)
)

// Mask replaces the personal data in s: a.***@example.com, +49*******78, a1b2…(64).
func Mask(s string) string {
	s = apiKey.ReplaceAllString(s, "omk_…")
	s = encEmail.ReplaceAllString(s, "$1***%40$2")
	s = encPhone.ReplaceAllStringFunc(s, func(m string) string { return m[:5] + strings.Repeat("*", len(m)-7) + m[len(m)-2:] })
	s = email.ReplaceAllString(s, "$1***@$2")
	s = phone.ReplaceAllStringFunc(s, func(m string) string {
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, m)
		if len(digits) < 8 {
			return m
		}
		return "+" + digits[:2] + strings.Repeat("*", len(digits)-4) + digits[len(digits)-2:]
	})
	return token.ReplaceAllStringFunc(s, func(m string) string {
		if !strings.ContainsAny(m, "0123456789") {
			return m // a long word, not a token
		}
		return fmt.Sprintf("%s…(%d)", m[:4], len(m))
	})
}

// Handler masks personal data in every record before h sees it.
func Handler(h slog.Handler) slog.Handler { return handler{h} }

type handler struct{ next slog.Handler }

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, Mask(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return handler{h.next.WithAttrs(masked)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.next.WithGroup(name)} }

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	key := strings.ToLower(a.Key)
	for _, k := range sensitiveKeys {
		if strings.Contains(key, k) && v.Kind() != slog.KindGroup {
			return slog.String(a.Key, "[masked]")
		}
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Mask(v.String()))
	case slog.KindGroup:
		as := v.Group()
		masked := make([]any, len(as))
		for i, g := range as {
			masked[i] = maskAttr(g)
		}
		return slog.Group(a.Key, masked...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, Mask(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, Mask(x.String()))
		case []byte:
			return slog.String(a.Key, Mask(string(x)))
		default:
			return slog.String(a.Key, Mask(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
