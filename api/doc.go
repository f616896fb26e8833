// Package api serves Omega Reach's connect-go services (Connect, gRPC and gRPC-Web on one port;
// JSON works with curl): EventService takes behaviour events into Kafka, ReachService triggers,
// cancels and inspects reaches. Every bad argument is an InvalidArgument error naming the field.
package api
