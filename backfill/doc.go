// Package backfill answers "how many users would this rule have reached last week?" before the
// rule is switched on. It replays the events topic's retained history, from a time up to the end
// offsets taken when it begins, through one rule version (active or draft) on a CEP stage of its
// own: its own consumer group, its own Redis key prefix, a rule set of one rule, and a starter
// that records the matches instead of starting them. It reports the matches (the count, per
// event-time day, a sample), and with Job.Start it starts the reaches of the recent ones under the
// workflow IDs live matching uses, so nobody already reached is reached again. The group and the
// state are deleted at the end, cancelled or not; the live stage's group and keys are never read
// or written.
package backfill
