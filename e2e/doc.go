// Package e2e holds the end-to-end tests: real events through a real Kafka-protocol broker, the CEP
// stage, a real Temporal server, Redis and PostgreSQL, to deliveries at a provider receiver. They
// run under `make test`, which starts the servers.
package e2e
