// Package tracing carries one trace from the ingest call through Kafka, the CEP stage, the reach
// workflow and its activities to the provider call. Trace IDs travel whether or not spans are
// exported: every tracking record and log line of a reach carries its event's trace ID. Spans are
// exported only when an exporter is configured (off by default).
package tracing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Exporters Setup accepts.
const (
	ExporterNone   = "none"
	ExporterOTLP   = "otlp"   // OTLP over gRPC; endpoint and headers from the OTEL_EXPORTER_OTLP_* variables
	ExporterStdout = "stdout" // JSON lines, to a file when one is named
)

var propagator = propagation.TraceContext{}

// enabled says whether spans are recorded and exported.
var enabled bool

// Enabled reports whether Setup installed an exporting tracer provider.
func Enabled() bool { return enabled }

// Tracer is Omega Reach's tracer (a no-op one unless Setup installed an exporter).
func Tracer() trace.Tracer { return otel.Tracer("github.com/omegareach/omega") }

// Setup installs the W3C trace-context propagator and, for exporter otlp or stdout, a tracer
// provider that exports spans of service (omega-api, omega-cep, ...). file is where the stdout
// exporter writes (standard output when empty). The returned function flushes and stops it.
func Setup(ctx context.Context, service, exporter, file string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagator)
	noop := func(context.Context) error { return nil }
	var exp sdktrace.SpanExporter
	switch exporter {
	case "", ExporterNone:
		return noop, nil
	case ExporterOTLP:
		e, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		exp = e
	case ExporterStdout:
		var w io.Writer = os.Stdout
		if file != "" {
			f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return nil, fmt.Errorf("trace file: %w", err)
			}
			w = f
		}
		e, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, err
		}
		exp = e
	default:
		return nil, fmt.Errorf("unknown trace exporter %q (none, otlp, stdout)", exporter)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	otel.SetTracerProvider(tp)
	enabled = true
	return tp.Shutdown, nil
}

// IDForEvent is the trace ID of an event that arrived without one (produced straight to Kafka):
// derived from its event ID, so a replay of the event has the same trace.
func IDForEvent(eventID string) string {
	h := sha256.Sum256([]byte("omega-trace:" + eventID))
	return hex.EncodeToString(h[:16])
}

// ID returns the trace ID of ctx's span, or "".
func ID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// Ensure returns ctx with a span context: ctx's own when it has one, else one of traceID (a
// fresh random trace when empty). The span context it adds is remote and unsampled: it names the
// trace for the records and headers downstream without exporting anything.
func Ensure(ctx context.Context, traceID string) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	var tid trace.TraceID
	if b, err := hex.DecodeString(traceID); err == nil && len(b) == len(tid) {
		copy(tid[:], b)
	}
	if !tid.IsValid() {
		_, _ = rand.Read(tid[:])
	}
	var sid trace.SpanID
	_, _ = rand.Read(sid[:])
	sid[0] |= 1 // never all zero
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}))
}

// Inject writes ctx's trace context into carrier (HTTP headers, Kafka headers, a map).
func Inject(ctx context.Context, carrier propagation.TextMapCarrier) { propagator.Inject(ctx, carrier) }

// Extract reads a trace context from carrier into ctx.
func Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return propagator.Extract(ctx, carrier)
}

// Headers adapts a Kafka record to produce to a carrier (the consumer reads with FromRecord).
type Headers struct {
	Produce *sarama.ProducerMessage
}

// Get returns the first header named key.
func (h Headers) Get(key string) string {
	for _, rh := range h.Produce.Headers {
		if strings.EqualFold(string(rh.Key), key) {
			return string(rh.Value)
		}
	}
	return ""
}

// Set replaces the header named key.
func (h Headers) Set(key, value string) {
	for i, rh := range h.Produce.Headers {
		if strings.EqualFold(string(rh.Key), key) {
			h.Produce.Headers[i].Value = []byte(value)
			return
		}
	}
	h.Produce.Headers = append(h.Produce.Headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

// Keys lists the header names.
func (h Headers) Keys() []string {
	out := make([]string, 0, len(h.Produce.Headers))
	for _, rh := range h.Produce.Headers {
		out = append(out, string(rh.Key))
	}
	return out
}

// FromRecord returns the trace ID in a consumed record's traceparent header and the header, or
// "" when it has none (or a malformed one). It parses the header itself, without allocating a
// context: the CEP stage calls it for the events that complete matches.
func FromRecord(m *sarama.ConsumerMessage) (traceID, traceParent string) {
	for _, rh := range m.Headers {
		if rh == nil || !strings.EqualFold(string(rh.Key), "traceparent") {
			continue
		}
		// version 00: "00-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags (2 hex), 55 bytes.
		v := string(rh.Value)
		if len(v) != 55 || v[:3] != "00-" || v[35] != '-' || v[52] != '-' {
			return "", ""
		}
		id, parent, flags := v[3:35], v[36:52], v[53:]
		for _, h := range []string{id, parent, flags} {
			if _, err := hex.DecodeString(h); err != nil {
				return "", ""
			}
		}
		if id == strings.Repeat("0", 32) || parent == strings.Repeat("0", 16) {
			return "", ""
		}
		return strings.ToLower(id), strings.ToLower(v)
	}
	return "", ""
}
