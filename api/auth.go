package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// KeySource finds the key a request presents (apikey.Store, apikey.Static).
type KeySource interface {
	Lookup(ctx context.Context, secret string) (apikey.Key, error)
}

// MethodScopes is the scope each method needs. A method missing here is refused to every key, so a
// new method cannot be served open by mistake (a test checks every served method is listed).
// Profiles are data other services feed in, like events: writing them takes ingest.
var MethodScopes = map[string]string{
	omegav1connect.EventServiceIngestProcedure:                     apikey.ScopeIngest,
	omegav1connect.ProfileServiceUpsertProfileProcedure:            apikey.ScopeIngest,
	omegav1connect.ProfileServiceImportProfilesProcedure:           apikey.ScopeIngest,
	omegav1connect.ReachServiceTriggerProcedure:                    apikey.ScopeTrigger,
	omegav1connect.ReachServiceCancelProcedure:                     apikey.ScopeTrigger,
	omegav1connect.ReachServiceSignalProcedure:                     apikey.ScopeTrigger,
	omegav1connect.InboxServiceMarkReadProcedure:                   apikey.ScopeTrigger,
	omegav1connect.ReachServiceGetProcedure:                        apikey.ScopeRead,
	omegav1connect.ReachServiceListProcedure:                       apikey.ScopeRead,
	omegav1connect.ReachServiceTimelineProcedure:                   apikey.ScopeRead,
	omegav1connect.ReachServiceFunnelProcedure:                     apikey.ScopeRead,
	omegav1connect.ReachServiceJourneyStepsProcedure:               apikey.ScopeRead,
	omegav1connect.ReachServiceRuleMatchesProcedure:                apikey.ScopeRead,
	omegav1connect.InboxServiceListInboxProcedure:                  apikey.ScopeRead,
	omegav1connect.ProfileServiceGetProfileProcedure:               apikey.ScopeRead,
	omegav1connect.ListServiceListMembersProcedure:                 apikey.ScopeRead,
	omegav1connect.ListServiceCheckMemberProcedure:                 apikey.ScopeRead,
	omegav1connect.RuleServiceValidateRuleProcedure:                apikey.ScopeRead,
	omegav1connect.RuleServiceGetRuleProcedure:                     apikey.ScopeRead,
	omegav1connect.RuleServiceListRulesProcedure:                   apikey.ScopeRead,
	omegav1connect.RuleServiceDryRunRuleProcedure:                  apikey.ScopeRead,
	omegav1connect.JourneyServiceValidateJourneyProcedure:          apikey.ScopeRead,
	omegav1connect.JourneyServiceGetJourneyProcedure:               apikey.ScopeRead,
	omegav1connect.JourneyServiceListJourneysProcedure:             apikey.ScopeRead,
	omegav1connect.JourneyServiceDryRunJourneyProcedure:            apikey.ScopeRead,
	omegav1connect.TemplateServiceRenderPreviewProcedure:           apikey.ScopeRead,
	omegav1connect.RuleServiceApplyRuleProcedure:                   apikey.ScopeAdmin,
	omegav1connect.RuleServiceActivateRuleProcedure:                apikey.ScopeAdmin,
	omegav1connect.RuleServiceDisableRuleProcedure:                 apikey.ScopeAdmin,
	omegav1connect.RuleServiceBackfillRuleProcedure:                apikey.ScopeAdmin,
	omegav1connect.JourneyServiceApplyJourneyProcedure:             apikey.ScopeAdmin,
	omegav1connect.JourneyServiceActivateJourneyProcedure:          apikey.ScopeAdmin,
	omegav1connect.JourneyServiceDisableJourneyProcedure:           apikey.ScopeAdmin,
	omegav1connect.ListServiceAddMembersProcedure:                  apikey.ScopeAdmin,
	omegav1connect.ListServiceRemoveMembersProcedure:               apikey.ScopeAdmin,
	omegav1connect.EventTypeServiceValidateEventTypeProcedure:      apikey.ScopeRead,
	omegav1connect.EventTypeServiceGetEventTypeProcedure:           apikey.ScopeRead,
	omegav1connect.EventTypeServiceListEventTypesProcedure:         apikey.ScopeRead,
	omegav1connect.EventTypeServiceApplyEventTypeProcedure:         apikey.ScopeAdmin,
	omegav1connect.EventTypeServiceDisableEventTypeProcedure:       apikey.ScopeAdmin,
	omegav1connect.EventTypeServiceActivateEventTypeProcedure:      apikey.ScopeAdmin,
	omegav1connect.AudienceServiceCountAudienceProcedure:           apikey.ScopeRead,
	omegav1connect.AudienceServiceGetBroadcastProcedure:            apikey.ScopeRead,
	omegav1connect.AudienceServiceStartBroadcastProcedure:          apikey.ScopeAdmin,
	omegav1connect.AudienceServicePauseBroadcastProcedure:          apikey.ScopeAdmin,
	omegav1connect.AudienceServiceResumeBroadcastProcedure:         apikey.ScopeAdmin,
	omegav1connect.AudienceServiceCancelBroadcastProcedure:         apikey.ScopeAdmin,
	omegav1connect.AudienceServiceScheduleBroadcastProcedure:       apikey.ScopeAdmin,
	omegav1connect.AudienceServiceDeleteBroadcastScheduleProcedure: apikey.ScopeAdmin,
}

// keyCacheTTL bounds how long a revoked key keeps working on a running API replica.
const keyCacheTTL = 10 * time.Second

// keyStaleMax bounds how long a key keeps working past keyCacheTTL while the key store
// (PostgreSQL) cannot be read: a calling service ingests through a database outage (events need
// only Kafka), at the price of a revocation taking effect when the store is back, or after this.
const keyStaleMax = time.Hour

// authenticator checks every call's key and scope, applies the key's rate limit and caps the
// call's deadline. Keys found are cached for keyCacheTTL; unknown keys are cached apart, in a
// bounded set, and looking keys up in the store is rate-limited as a whole, so a flood of made-up
// keys neither loads the database nor evicts the real keys' buckets.
type authenticator struct {
	src         KeySource
	defaultRate float64
	maxTimeout  time.Duration
	now         func() time.Time
	onError     func(what string, err error) error
	lookups     *rate.Limiter // store lookups, all keys together

	mu      sync.Mutex
	entries map[[32]byte]*keyEntry // live keys
	unknown map[[32]byte]time.Time // unknown or revoked keys, when seen
}

// maxUnknown bounds the set of unknown keys remembered.
const maxUnknown = 4096

type keyEntry struct {
	key     apikey.Key
	at      time.Time
	limiter *rate.Limiter
	// retry: while the store is away, the key is served stale without a lookup until then (a
	// store that hangs rather than refuses would otherwise hold every call for its timeout).
	retry time.Time
}

func newAuthenticator(src KeySource, defaultRate float64, maxTimeout time.Duration, onError func(string, error) error) *authenticator {
	return &authenticator{src: src, defaultRate: defaultRate, maxTimeout: maxTimeout, now: time.Now, onError: onError,
		lookups: rate.NewLimiter(200, 400), entries: map[[32]byte]*keyEntry{}, unknown: map[[32]byte]time.Time{}}
}

// entry returns the live key of secret, or nil when it is unknown or revoked.
func (a *authenticator) entry(ctx context.Context, secret string) (*keyEntry, error) {
	h := sha256.Sum256([]byte(secret))
	now := a.now()
	a.mu.Lock()
	e, ok := a.entries[h]
	var retry time.Time
	if ok {
		retry = e.retry
	}
	seen, isUnknown := a.unknown[h]
	a.mu.Unlock()
	switch {
	case ok && now.Sub(e.at) < keyCacheTTL, ok && now.Before(retry) && now.Sub(e.at) < keyStaleMax:
		return e, nil
	case isUnknown && now.Sub(seen) < keyCacheTTL:
		return nil, nil
	}
	if !a.lookups.Allow() {
		if ok {
			return e, nil // lookups exhausted by a flood: a known key goes on, refreshed when they free up
		}
		return nil, connect.NewError(connect.CodeResourceExhausted, errors.New("too many API key lookups; retry later"))
	}
	k, err := a.src.Lookup(ctx, secret)
	if errors.Is(err, apikey.ErrNotFound) {
		a.mu.Lock()
		delete(a.entries, h) // revoked
		if len(a.unknown) >= maxUnknown {
			for u, at := range a.unknown {
				if now.Sub(at) >= keyCacheTTL {
					delete(a.unknown, u)
				}
			}
			if len(a.unknown) >= maxUnknown {
				clear(a.unknown) // all fresh: a flood; forgetting them costs lookups, which are limited
			}
		}
		a.unknown[h] = now
		a.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		if ok && now.Sub(e.at) < keyStaleMax {
			// The store is away: a key known live goes on, looked up again in a second.
			a.mu.Lock()
			e.retry = now.Add(time.Second)
			a.mu.Unlock()
			return e, nil
		}
		return nil, a.onError("look up api key", err) // not cached: the store may be back soon
	}
	r := k.RateLimit
	if r <= 0 {
		r = a.defaultRate
	}
	ne := &keyEntry{key: k, at: now, limiter: rate.NewLimiter(rate.Limit(r), max(1, int(r)))}
	if ok && e.key.RateLimit == k.RateLimit {
		ne.limiter = e.limiter // a refresh keeps the bucket's level
	}
	a.mu.Lock()
	a.entries[h] = ne // live keys only: bounded by the keys issued
	delete(a.unknown, h)
	a.mu.Unlock()
	return ne, nil
}

func (a *authenticator) check(ctx context.Context, procedure string, header interface{ Get(string) string }) error {
	scope, ok := MethodScopes[procedure]
	if !ok {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s is not open to any key", procedure))
	}
	auth := header.Get("Authorization")
	secret, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || secret == "" {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing API key: send the header Authorization: Bearer followed by the key"))
	}
	e, err := a.entry(ctx, strings.TrimSpace(secret))
	if err != nil {
		return err
	}
	if e == nil {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("unknown or revoked API key"))
	}
	if !e.key.Allows(scope) {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("key %q lacks the %s scope that %s needs", e.key.Name, scope, procedure))
	}
	if !e.limiter.Allow() {
		err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("key %q is over its rate of %g requests/s; retry later", e.key.Name, float64(e.limiter.Limit())))
		err.Meta().Set("Retry-After", strconv.Itoa(1))
		return err
	}
	return nil
}

// countCalls counts every call by procedure and code, refused ones included, streaming ones
// (BackfillRule) when they end.
var countCalls connect.Interceptor = callCounter{}

type callCounter struct{}

func countCall(procedure string, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	metrics.APIRequests.WithLabelValues(procedure, code).Inc()
}

func (callCounter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		countCall(req.Spec().Procedure, err)
		return resp, err
	}
}

func (callCounter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (callCounter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		countCall(conn.Spec().Procedure, err)
		return err
	}
}

func (a *authenticator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		if err := a.check(ctx, req.Spec().Procedure, req.Header()); err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > a.maxTimeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, a.maxTimeout)
			defer cancel()
		}
		return next(ctx, req)
	}
}

func (a *authenticator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authenticator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(ctx, conn.Spec().Procedure, conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
