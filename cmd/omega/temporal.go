package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/internal/tracing"
	"github.com/omegareach/omega/worker"
	"go.opentelemetry.io/otel"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"
)

func dialTemporal(ctx context.Context, log *slog.Logger, cfg config) (client.Client, error) {
	o := client.Options{HostPort: cfg.temporalAddr, Namespace: cfg.namespace, Logger: tlog.NewStructuredLogger(log)}
	if err := secureTemporal(&o); err != nil {
		return nil, err
	}
	// Starts whose answer carries the first workflow task were eager (OMEGA_CEP_EAGER_START).
	o.ConnectionOptions.DialOptions = append(o.ConnectionOptions.DialOptions, grpc.WithChainUnaryInterceptor(countEagerStarts))
	if tracing.Enabled() {
		// Spans for starting, running and signalling workflows and for their activities, the
		// trace context carried in Temporal headers.
		ti, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{TextMapPropagator: otel.GetTextMapPropagator()})
		if err != nil {
			return nil, err
		}
		o.Interceptors = append(o.Interceptors, ti)
	}
	c, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("dial temporal at %s: %w", cfg.temporalAddr, err)
	}
	return c, nil
}

func countEagerStarts(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker,
	opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if r, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok && err == nil && r.GetEagerWorkflowTask() != nil {
		metrics.EagerStarts.Inc()
	}
	return err
}

// markReadyWhenServing marks the process ready (/readyz) once Temporal serves the task queue, and
// with an identity, once that worker's polls arrive (see worker.Serving): a frontend that
// answers is not yet a Temporal that runs reaches. It waits for each of also to close first (the
// CEP stage's Kafka connection).
func markReadyWhenServing(ctx context.Context, log *slog.Logger, tc client.Client, taskQueue, identity string, also ...<-chan struct{}) {
	for _, c := range also {
		select {
		case <-c:
		case <-ctx.Done():
			return
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := worker.WaitServing(tctx, tc, taskQueue, identity)
	cancel()
	if err != nil {
		log.Warn("waiting for temporal to serve", "task_queue", taskQueue, "err", err)
		if err := worker.WaitServing(ctx, tc, taskQueue, identity); err != nil {
			return // stopping
		}
	}
	log.Info("temporal serves", "task_queue", taskQueue)
	metrics.MarkReady()
}
