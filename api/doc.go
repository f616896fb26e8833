// Package api serves Omega Reach's connect-go services (Connect, gRPC and gRPC-Web on one port;
// JSON works with curl), each behind API-key scopes: EventService takes behaviour events into
// Kafka; ReachService triggers, cancels and inspects reaches (timelines, funnels, signals);
// RuleService, JourneyService and TemplateService let growth teams manage rules (with dry runs and
// backfills), journeys and templates as versioned data; ListService, ProfileService and
// InboxService hold the lists, profiles and in-app inbox the filters and channels read. Every bad
// argument is an InvalidArgument error naming the field.
package api
