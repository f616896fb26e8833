package pii_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/pii"
)

func TestMask(t *testing.T) {
	apns := strings.Repeat("a1b2c3d4", 8)
	fcm := "dQw4w9WgXcQ:APA91bH" + strings.Repeat("x9Y8", 30)
	for in, want := range map[string]string{
		"mail alice.smith@example.com now":                         "mail a***@example.com now",
		"sms to +4915112345678 refused":                            "sms to +49*********78 refused",
		"call +49 151 1234-5678":                                   "call +49*********78",
		"apns " + apns + " gone":                                   "apns a1b2…(64) gone",
		"fcm " + fcm:                                               "fcm dQw4…(" + strconv.Itoa(len(fcm)) + ")",
		"reach/cart-add/u1/e-17 sent":                              "reach/cart-add/u1/e-17 sent",
		"provider 200 msg-1; 3 devices":                            "provider 200 msg-1; 3 devices",
		"version +1 of 12":                                         "version +1 of 12",
		"a long word averyveryveryverylongwordindeedwithoutdigits": "a long word averyveryveryverylongwordindeedwithoutdigits",
	} {
		require.Equal(t, want, pii.Mask(in), in)
	}
}

// What a provider error quoting a number, an address or a token would have put in the log does
// not reach it; sensitive keys are masked whole.
func TestHandlerMasksRecords(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(pii.Handler(slog.NewJSONHandler(&buf, nil))).With("user", "bob@example.org")
	token := strings.Repeat("f00d", 16)
	log.Error("send to +4915112345678 failed", "err", errors.New("provider: device "+token+" unregistered"),
		"phone", "+4915112345678", "to", "bob@example.org", slog.Group("msg", "body", "call +1 415 555 0100"), "n", 3)
	out := buf.String()
	for _, leak := range []string{"+4915112345678", "bob@example.org", token, "555 0100"} {
		require.NotContains(t, out, leak)
	}
	require.Contains(t, out, `"phone":"[masked]"`)
	require.Contains(t, out, "b***@example.org")
	require.Contains(t, out, `"n":3`)
}
