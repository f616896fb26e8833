package cep

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/workflows"
)

// A match takes the Kafka time and trace of the last record, in the batch, of the event that
// completed it; a match whose event is not in the batch (a timer's, a shared one's) keeps none.
func TestAnnotate(t *testing.T) {
	t1, t2, t3 := time.Unix(1, 0), time.Unix(2, 0), time.Unix(3, 0)
	fresh := []decoded{
		{msg: &sarama.ConsumerMessage{Timestamp: t1}, ev: event.Event{EventID: "a"}},
		{msg: &sarama.ConsumerMessage{Timestamp: t2}, ev: event.Event{EventID: "b"}},
		{msg: &sarama.ConsumerMessage{Timestamp: t3}, ev: event.Event{EventID: "a"}}, // a duplicate, later
	}
	ms := []workflows.Match{{EventIDs: []string{"b", "a"}}, {EventIDs: []string{"b"}}, {EventIDs: []string{"gone"}}, {}}
	annotate(fresh, ms)
	require.Equal(t, t3, ms[0].ReceivedAt)
	require.Equal(t, tracing.IDForEvent("a"), ms[0].TraceID)
	require.Equal(t, t2, ms[1].ReceivedAt)
	require.Equal(t, tracing.IDForEvent("b"), ms[1].TraceID)
	require.True(t, ms[2].ReceivedAt.IsZero())
	require.Empty(t, ms[2].TraceID)
	require.Empty(t, ms[3].TraceID)
}
