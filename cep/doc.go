// Package cep is the pattern-detection stage: a Sarama consumer group reads behaviour events from
// omega.events, dead-letters what it cannot decode, drops replays by event_id (Redis), matches the
// active rules and starts one ReachWorkflow per match, with a workflow ID derived from the match so
// that a replay collapses onto the run it already started. Offsets are marked only after the
// dead-letter writes, the workflow starts and the dedupe marks of a batch are durable: a crash
// anywhere replays from the last commit and loses nothing.
package cep
