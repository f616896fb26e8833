package api

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"

	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/store"
	"github.com/omegareach/omega/workflows"
)

// Config wires the API to its backends.
type Config struct {
	// Producer sends ingested events; it must wait for all in-sync replicas.
	Producer sarama.SyncProducer
	// Topic ingested events go to (event.Topic when empty).
	Topic    string
	Temporal client.Client
	Audit    *audit.Store
	// Journeys reports whether a journey exists, for Trigger's validation.
	Journeys func(id string) bool
	// RuleStore and JourneyStore back RuleService and JourneyService (not served when nil).
	RuleStore    SpecStore[cep.Rule]
	JourneyStore SpecStore[journey.Journey]
	// Backfill runs RuleService.BackfillRule (Unimplemented when nil).
	Backfill Backfiller
	// EventTypes backs EventTypeService and gives the catalogue ingested events, dry runs and
	// signals are validated against (not served, and the default catalogue, when nil).
	EventTypes EventTypeStore
	// Inbox backs InboxService (not served when nil).
	Inbox store.Inbox
	// Lists backs ListService (not served when nil).
	Lists store.Lists
	// Redis is the scratch state of RuleService's dry runs.
	Redis redis.UniversalClient
	// Profiles backs ProfileService (not served when nil).
	Profiles ProfileStore
	// Keys authenticates every call (apikey.Store); required.
	Keys KeySource
	// DefaultRate is the requests per second a key without its own rate may make (50 when zero).
	DefaultRate float64
	// MaxCallTimeout caps how long one call may run, whatever the caller's deadline (30s when zero).
	MaxCallTimeout time.Duration
	// Pages backs AudienceService's dry runs and, with Temporal, its broadcasts (not served
	// when nil).
	Pages ProfilePager
	// TaskQueue of reach workflows (workflows.TaskQueue when empty).
	TaskQueue string
	// MaxRequestBytes caps a request body (4 MiB when zero).
	MaxRequestBytes int
	Log             *slog.Logger
}

type server struct {
	producer   sarama.SyncProducer
	topic      string
	temporal   client.Client
	audit      *audit.Store
	journeys   func(string) bool
	eventTypes EventTypeStore
	taskQueue  string
	log        *slog.Logger
	now        func() time.Time
}

// NewHandler returns the HTTP handler serving every service, gRPC health and reflection.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Producer == nil || cfg.Temporal == nil || cfg.Audit == nil || cfg.Journeys == nil || cfg.Keys == nil {
		return nil, errors.New("api: producer, temporal, audit, journeys and keys are required")
	}
	if cfg.DefaultRate == 0 {
		cfg.DefaultRate = 50
	}
	if cfg.MaxCallTimeout == 0 {
		cfg.MaxCallTimeout = 30 * time.Second
	}
	if cfg.TaskQueue == "" {
		cfg.TaskQueue = workflows.TaskQueue
	}
	if cfg.Topic == "" {
		cfg.Topic = event.Topic
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 4 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &server{producer: cfg.Producer, topic: cfg.Topic, temporal: cfg.Temporal, audit: cfg.Audit, journeys: cfg.Journeys,
		eventTypes: cfg.EventTypes, taskQueue: cfg.TaskQueue, log: cfg.Log, now: time.Now}
	auth := newAuthenticator(cfg.Keys, cfg.DefaultRate, cfg.MaxCallTimeout, s.internal)
	opts := append([]connect.HandlerOption{connect.WithReadMaxBytes(cfg.MaxRequestBytes), connect.WithInterceptors(countCalls, auth)}, jsonCodecs()...)
	mux := http.NewServeMux()
	mux.Handle(omegav1connect.NewEventServiceHandler(s, opts...))
	mux.Handle(omegav1connect.NewReachServiceHandler(s, opts...))
	services := []string{omegav1connect.EventServiceName, omegav1connect.ReachServiceName}
	if cfg.RuleStore != nil {
		mux.Handle(omegav1connect.NewRuleServiceHandler(ruleService{ruleSpecs(s, cfg.RuleStore), cfg.Redis, cfg.Backfill}, opts...))
		services = append(services, omegav1connect.RuleServiceName)
	}
	if cfg.EventTypes != nil {
		mux.Handle(omegav1connect.NewEventTypeServiceHandler(eventTypeService{eventTypeSpecs(s, cfg.EventTypes)}, opts...))
		services = append(services, omegav1connect.EventTypeServiceName)
	}
	if cfg.Lists != nil {
		mux.Handle(omegav1connect.NewListServiceHandler(listService{s, cfg.Lists}, opts...))
		services = append(services, omegav1connect.ListServiceName)
	}
	if cfg.Profiles != nil {
		mux.Handle(omegav1connect.NewProfileServiceHandler(profileService{s, cfg.Profiles}, opts...))
		services = append(services, omegav1connect.ProfileServiceName)
	}
	if cfg.Inbox != nil {
		mux.Handle(omegav1connect.NewInboxServiceHandler(inboxService{s, cfg.Inbox}, opts...))
		services = append(services, omegav1connect.InboxServiceName)
	}
	if cfg.Pages != nil {
		mux.Handle(omegav1connect.NewAudienceServiceHandler(audienceService{s, cfg.Pages, cfg.Lists}, opts...))
		services = append(services, omegav1connect.AudienceServiceName)
	}
	if cfg.JourneyStore != nil {
		js := journeySpecs(s, cfg.JourneyStore)
		mux.Handle(omegav1connect.NewJourneyServiceHandler(journeyService{js}, opts...))
		mux.Handle(omegav1connect.NewTemplateServiceHandler(templateService{js}, opts...))
		services = append(services, omegav1connect.JourneyServiceName, omegav1connect.TemplateServiceName)
	}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(services...)))
	mux.Handle(grpcreflect.NewHandlerV1(grpcreflect.NewStaticReflector(services...)))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(grpcreflect.NewStaticReflector(services...)))
	return mux, nil
}

// Serve serves h on addr (HTTP/1.1 and cleartext HTTP/2, so gRPC works without TLS) until ctx
// ends, then drains in-flight calls for up to 10 seconds.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	return ServeTLS(ctx, addr, h, nil, log)
}

// ServeTLS is Serve over TLS when tc is set (HTTP/1.1 and HTTP/2), for deployments without a
// TLS-terminating proxy in front.
func ServeTLS(ctx context.Context, addr string, h http.Handler, tc *tls.Config, log *slog.Logger) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if tc == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP2(true)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           longCalls(h),
		Protocols:         &protocols,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         tc,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		if tc != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificates are in TLSConfig; h2 is negotiated
			return
		}
		errc <- srv.Serve(ln)
	}()
	log.Info("api listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// NewProducer returns the idempotent producer Ingest needs: acknowledged only when every in-sync
// replica has the events, and never duplicated by its own retries. secure, when set, adds TLS
// and SASL to the config.
func NewProducer(brokers []string, secure func(*sarama.Config) error) (sarama.SyncProducer, error) {
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	sc.ClientID = "omega-api"
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	if secure != nil {
		if err := secure(sc); err != nil {
			return nil, err
		}
	}
	return sarama.NewSyncProducer(brokers, sc)
}
