package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/IBM/sarama"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/tracing"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// MaxIngestBatch is the most events one Ingest call takes.
const MaxIngestBatch = 1000

// Ingest validates every event, then produces them all; it answers once Kafka acknowledged them.
func (s *server) Ingest(ctx context.Context, req *connect.Request[omegav1.IngestRequest]) (*connect.Response[omegav1.IngestResponse], error) {
	decoded, err := s.decodeEvents(req.Msg.GetEvents(), MaxIngestBatch)
	if err != nil {
		return nil, err
	}
	// The events carry the call's trace in their traceparent header (the caller's, else a new one).
	ctx, span := traced(ctx, req.Header(), "omega.Ingest")
	defer span.End()
	msgs := make([]*sarama.ProducerMessage, len(decoded))
	var bad violations
	for i, ev := range decoded {
		b, err := ev.Encode()
		switch {
		case err != nil:
			bad.add(fmt.Sprintf("events[%d].attrs", i), err.Error())
		case len(b) > event.MaxSize:
			bad.add(fmt.Sprintf("events[%d]", i), fmt.Sprintf("%d bytes encoded exceeds the %d byte limit", len(b), event.MaxSize))
		default:
			msgs[i] = &sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder(ev.Key()), Value: sarama.ByteEncoder(b)}
			tracing.Inject(ctx, tracing.Headers{Produce: msgs[i]})
		}
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	if req.Msg.GetValidateOnly() {
		return connect.NewResponse(&omegav1.IngestResponse{Accepted: int32(len(msgs))}), nil
	}
	if err := s.produce(ctx, msgs); err != nil {
		return nil, s.internal("produce events", err)
	}
	return connect.NewResponse(&omegav1.IngestResponse{Accepted: int32(len(msgs))}), nil
}

// produceAttempts bounds how often Ingest sends its events before it answers Unavailable.
const produceAttempts = 3

// produce sends msgs, the whole batch again when the producer gives up on any of them, up to
// produceAttempts times within the call: after a broker crash the idempotent producer's first
// batch can fail while it takes a new producer epoch, and the caller should not see that. An
// event stored twice is one event to the CEP stage (its event_id).
func (s *server) produce(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		batch := make([]*sarama.ProducerMessage, len(msgs)) // fresh messages: the producer marks those it sent
		for i, m := range msgs {
			batch[i] = &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers}
		}
		err := s.producer.SendMessages(batch)
		if err == nil {
			return nil
		}
		var pes sarama.ProducerErrors
		if errors.As(err, &pes) && len(pes) > 0 {
			err = fmt.Errorf("%w (first: %w)", err, pes[0].Err) // the cause, for the log
		}
		if attempt == produceAttempts || ctx.Err() != nil {
			return err
		}
		s.log.Warn("produce events: sending again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// violations collects a request's field violations, so one answer names every bad event rather
// than the first (a caller fixing a batch of 1,000 needed a call per bad event).
type violations struct {
	list  []*errdetails.BadRequest_FieldViolation
	total int
}

func (v *violations) add(field, reason string) {
	v.total++
	if len(v.list) < maxViolations {
		v.list = append(v.list, &errdetails.BadRequest_FieldViolation{Field: field, Description: reason})
	}
}

// err is the InvalidArgument error for the violations, nil when there are none.
func (v *violations) err() error {
	if v.total == 0 {
		return nil
	}
	return invalidAll(v.list, v.total)
}

// decodeEvents validates a request's events against the wire contract and the event catalogue
// (declared type, scope, attribute schema); an error names the index and the field
// (events[3].attrs.coupon_id) of every event refused (one violation per event, its first), in
// its message the first.
func (s *server) decodeEvents(evs []*omegav1.Event, limit int) ([]event.Event, error) {
	switch {
	case len(evs) == 0:
		return nil, invalid("events", "at least one event is required")
	case len(evs) > limit:
		return nil, invalid("events", "at most %d events per call, got %d", limit, len(evs))
	}
	now, cat := s.now(), s.catalog()
	out := make([]event.Event, len(evs))
	var bad violations
	for i, pe := range evs {
		ev := fromProto(pe)
		err := ev.Validate(now)
		if err == nil || (cat != nil && ev.UserID == "" && ev.ItemID == "") {
			// Without user_id and item_id, the catalogue says which of them the type needs.
			if cerr := cat.Check(&ev); cerr != nil || err == nil {
				err = cerr
			}
		}
		if err != nil {
			var fe *event.FieldError
			if errors.As(err, &fe) && fe.Field == "type" && cat == nil && s.eventTypes != nil {
				// The store has not answered yet: the type may well be declared. A retry will
				// tell; InvalidArgument would tell the caller never to send it again.
				return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("events[%d].type: the event catalogue could not be read; retry later", i))
			}
			if errors.As(err, &fe) {
				bad.add(fmt.Sprintf("events[%d].%s", i, fe.Field), fe.Reason)
			} else {
				bad.add(fmt.Sprintf("events[%d]", i), err.Error())
			}
			continue
		}
		out[i] = ev
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func fromProto(pe *omegav1.Event) event.Event {
	ev := event.Event{EventID: pe.GetEventId(), UserID: pe.GetUserId(), Type: pe.GetType(), ItemID: pe.GetItemId()}
	if pe.GetTs() != nil {
		ev.TS = pe.GetTs().AsTime()
	}
	if pe.GetAttrs() != nil {
		ev.Attrs = pe.GetAttrs().AsMap()
	}
	return ev
}
