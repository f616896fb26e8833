// Package workflows holds the reach workflow: one run per match (or API trigger), which routes the
// match to a journey, runs the filter chain, dispatches, and audits every step. What a step means
// (where it leads, how the run ends) is the journey machine's (journey.Journey.Advance); the
// workflow performs it. Its inputs and
// results are single structs so they can grow without breaking runs in flight.
package workflows
