// Package activities holds what a reach workflow does to the world: route a match to a journey,
// run the filter chain, dispatch on a channel, and write the audit trail. The worker builds one
// Activities value with its clients and registers it; every method is idempotent, keyed on the
// reach (workflow) ID and step, because Temporal retries them.
package activities
