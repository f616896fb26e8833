package main

import (
	"fmt"
	"strings"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
)

// usageHead is the help text's fixed part: the commands and the process settings.
const usageHead = `usage: omega <command>

commands:
  api       serve EventService and ReachService (OMEGA_API_ADDR)
  cep       run a CEP replica: consume omega.events, start reach workflows
  worker    run reach workflows and activities
  receiver  a stand-in provider that logs webhook deliveries (OMEGA_RECEIVER_ADDR)
  migrate   bring the PostgreSQL schema up to date
  probe URL exit 0 when URL answers 200 (container health checks without curl)
  rules     validate, apply, list, get, disable and dry-run rules (omega rules for help)
  journeys  validate, apply, list, get and disable journeys (omega journeys for help)
  profiles  import (JSONL or CSV), get and set user profiles (omega profiles for help)
  templates list a journey's templates and preview them (omega templates for help)
  reaches   list, get, cancel and trigger reaches through the API (omega reaches for help)
  audiences count an audience, broadcast a journey to it, pause, resume, cancel (omega audiences)
  events    send events through the API; declare event types (omega events for help)
  apikey    create, revoke and list API keys (omega apikey for help)

environment (defaults in brackets):
  OMEGA_KAFKA_BROKERS [127.0.0.1:9092]   OMEGA_REDIS_ADDR [127.0.0.1:6379]
  OMEGA_PG_URL [postgres://postgres@127.0.0.1:5432/omega?sslmode=disable]
  OMEGA_TEMPORAL_ADDR [127.0.0.1:7233]   OMEGA_TEMPORAL_NAMESPACE [default]
  (OMEGA_REDIS_ADDR: several comma-separated addresses are a Redis Cluster's seeds)
  OMEGA_API_ADDR [127.0.0.1:8080]        OMEGA_RECEIVER_ADDR [127.0.0.1:8090]
  OMEGA_API_URL [http://$OMEGA_API_ADDR] OMEGA_API_KEY (reaches, events, audiences)
  OMEGA_API_RATE [50: requests/s per key without its own rate]
  OMEGA_API_TLS_CERT_FILE OMEGA_API_TLS_KEY_FILE [TLS off] OMEGA_API_TLS_CA_FILE [client certificates required]
TLS and credentials of clients (SECURITY.md): OMEGA_{KAFKA,REDIS,TEMPORAL}_TLS=1, _CA_FILE, _CERT_FILE,
  _KEY_FILE; OMEGA_KAFKA_SASL_MECHANISM/_USER/_PASSWORD; OMEGA_REDIS_USERNAME/_PASSWORD;
  OMEGA_TEMPORAL_API_KEY; PostgreSQL in OMEGA_PG_URL (sslmode, sslrootcert ...). Any secret X
  may be a file: X_FILE.
  OMEGA_TASK_QUEUE [omega-reach]
  OMEGA_METRICS_ADDR [off; api, cep, worker: /metrics (Prometheus), /healthz, /readyz there]
  OMEGA_KEY_PREFIX [omega: Redis keys of cep and worker]
  OMEGA_TRACE_EXPORTER [none|otlp|stdout: OpenTelemetry spans; otlp reads OTEL_EXPORTER_OTLP_*]
  OMEGA_TRACE_FILE [stdout: where the stdout exporter writes JSON spans]
  OMEGA_PPROF [off; 1: Go profiles at /debug/pprof/ on OMEGA_METRICS_ADDR]
  OMEGA_EVENTS_TOPIC [omega.events: api produces, cep consumes; DLQ: <topic>.dlq]
cep only:
  OMEGA_CEP_GROUP [omega-cep]
  OMEGA_CEP_ALLOWED_LATENESS [5s: how far a partition's watermark trails its latest event time]
  OMEGA_CEP_SHARED_GRACE [24h: how long past their event time's need join links and triggers,
    and the waiting instances of absences not keyed on the user, stay in Redis; a replica this
    far behind the newest events still finds them]
  OMEGA_CEP_BULK_AFTER [1m: a match read or due this late starts its reach on the bulk task
    queue (<task queue>-bulk), so fresh reaches never wait behind a catch-up; off: never]
  OMEGA_CEP_MAX_MATCH_AGE [24h: a match whose event happened this long before Kafka took it,
    or an absence due this long before its partition's event time, is audited suppressed
    (stale) and starts nothing; off: any age]
  OMEGA_CEP_EAGER_START [false; make run and deploy/ set true: a reach worker in this process
    (the worker's settings apply) and eager workflow starts]
  OMEGA_RULES [the rule store; or rules from a file or directory]
  OMEGA_KAFKA_DEBUG [false; true logs the Kafka client's group protocol: joins, syncs, sessions]
  OMEGA_LOG_FORMAT [text|json]  OMEGA_LOG_LEVEL [info|debug]   (phones, emails, tokens masked)
worker only:
  OMEGA_AUDIT_RETENTION [2160h: audit day partitions older are dropped]
  OMEGA_RATE_LIMITS [sms=10,push=500: sends per second per channel, across workers; none when empty]
  OMEGA_CONTROL_GROUP_PERCENT [0: the share of users held out of every marketing journey,
    audited held_out, the control of lift; 5 holds out 5%]
api only:
  OMEGA_TEMPORAL_UI_URL [http://127.0.0.1:8233: where the console's links to runs point]
`

// usage is the help text: the commands and the process settings, then each channel and filter
// with the settings it declares (read from its spec, so a new plug-in documents itself).
func usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	b.WriteString("channels (worker; a journey's send names one):\n")
	for _, s := range channel.Builtin().Specs() {
		pluginUsage(&b, s.Name, s.Doc, s.Fields)
	}
	b.WriteString("filters (worker), run in chains:")
	for _, c := range filter.Chains {
		fmt.Fprintf(&b, " %s (%s)", c.Name, strings.Join(c.Filters, ", "))
	}
	b.WriteString("\n")
	for _, s := range filter.Builtin().Specs() {
		pluginUsage(&b, s.Name, s.Doc, s.Fields)
	}
	return b.String()
}

func pluginUsage(b *strings.Builder, name, doc string, fields []plugin.Field) {
	fmt.Fprintf(b, "  %-11s %s\n", name, doc)
	var fb strings.Builder
	plugin.Usage(&fb, fields)
	for _, line := range strings.SplitAfter(fb.String(), "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
}
