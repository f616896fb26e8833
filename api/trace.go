package api

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/omegareach/omega/internal/tracing"
)

// traced continues the caller's trace (its traceparent header) in a server span named name, or
// starts a trace when the caller sent none; the trace ID is there even when no span is exported.
func traced(ctx context.Context, h http.Header, name string) (context.Context, trace.Span) {
	ctx = tracing.Extract(ctx, propagation.HeaderCarrier(h))
	ctx, span := tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	return tracing.Ensure(ctx, ""), span
}

// traceParent is ctx's trace context as a traceparent header value.
func traceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	tracing.Inject(ctx, c)
	return c["traceparent"]
}
