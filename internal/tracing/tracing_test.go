package tracing_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"

	"github.com/omegareach/omega/internal/tracing"
)

const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestFromRecord(t *testing.T) {
	rec := func(v string) *sarama.ConsumerMessage {
		return &sarama.ConsumerMessage{Headers: []*sarama.RecordHeader{{Key: []byte("other"), Value: []byte("x")}, {Key: []byte("Traceparent"), Value: []byte(v)}}}
	}
	id, tp := tracing.FromRecord(rec(parent))
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", id)
	require.Equal(t, parent, tp)
	for _, bad := range []string{"", "00-zz", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", "000af7651916cd43dd8448eb211c80319cb-b7ad6b7169203331-01",
		parent + "x", parent + strings.Repeat("-01", 1000), "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g"} {
		id, _ := tracing.FromRecord(rec(bad))
		require.Empty(t, id, bad)
	}
	id, _ = tracing.FromRecord(&sarama.ConsumerMessage{})
	require.Empty(t, id)
}

func TestIDForEventIsStable(t *testing.T) {
	a, b := tracing.IDForEvent("e1"), tracing.IDForEvent("e1")
	require.Equal(t, a, b)
	require.Len(t, a, 32)
	require.NotEqual(t, a, tracing.IDForEvent("e2"))
}

// Ensure keeps a trace it is given, names one from an ID, or starts one; Inject writes it out.
func TestEnsureAndInject(t *testing.T) {
	ctx := tracing.Extract(context.Background(), propagation.MapCarrier{"traceparent": parent})
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", tracing.ID(tracing.Ensure(ctx, "4bf92f3577b34da6a3ce929d0e0e4736")))

	ctx = tracing.Ensure(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tracing.ID(ctx))
	msg := &sarama.ProducerMessage{}
	tracing.Inject(ctx, tracing.Headers{Produce: msg})
	require.Len(t, msg.Headers, 1)
	require.True(t, strings.HasPrefix(string(msg.Headers[0].Value), "00-4bf92f3577b34da6a3ce929d0e0e4736-"), string(msg.Headers[0].Value))
	tracing.Inject(ctx, tracing.Headers{Produce: msg})
	require.Len(t, msg.Headers, 1, "replaced, not added")

	fresh := tracing.ID(tracing.Ensure(context.Background(), "not hex"))
	require.Len(t, fresh, 32)
	require.NotEqual(t, fresh, tracing.ID(tracing.Ensure(context.Background(), "")))
}

func TestLogHandlerAddsTraceID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("svc", "cep")
	log.InfoContext(tracing.Ensure(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736"), "matched")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`)
	require.Contains(t, lines[0], `"svc":"cep"`)
	require.NotContains(t, lines[1], "trace_id")
}

func TestSetupRefusesUnknownExporter(t *testing.T) {
	_, err := tracing.Setup(context.Background(), "omega-test", "zipkin", "")
	require.ErrorContains(t, err, "zipkin")
	stop, err := tracing.Setup(context.Background(), "omega-test", "", "")
	require.NoError(t, err)
	require.NoError(t, stop(context.Background()))
	require.False(t, tracing.Enabled())
}
