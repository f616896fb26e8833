package backfill

import (
	"fmt"
	"slices"
	"time"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/workflows"
)

// Defaults and bounds of a Job.
const (
	DefaultStartWithin = 24 * time.Hour
	DefaultSampleSize  = 10
	MaxSampleSize      = 100
)

// Job is one backfill: which rule version, from when, and whether to start reaches.
type Job struct {
	// Rule is the version replayed, active or draft; its disabled and shadow flags are ignored
	// (the backfill asks what it would match).
	Rule cep.Rule
	// Since is the earliest record time replayed (the broker's record timestamps decide where
	// each partition begins).
	Since time.Time
	// Start starts the reaches of the matches whose event time is within StartWithin of the
	// backfill's beginning (24h when zero); older matches are only reported: a reminder about a
	// cart from last week no longer helps anyone.
	Start       bool
	StartWithin time.Duration
	// SampleSize is how many matches the report lists (10 when zero, at most 100).
	SampleSize int
}

// ArgError is a job argument that cannot be right; Field names it as the API does.
type ArgError struct {
	Field  string
	Reason string
}

func (e *ArgError) Error() string { return e.Field + ": " + e.Reason }

// Validate checks the job's arguments against now (the backfill's beginning).
func (j *Job) Validate(now time.Time) error {
	switch {
	case j.Rule.ID == "":
		return &ArgError{"rule_id", "required"}
	case j.Since.IsZero():
		return &ArgError{"since", "required: the earliest record time to replay"}
	case !j.Since.Before(now):
		return &ArgError{"since", fmt.Sprintf("%s is not in the past", j.Since.UTC().Format(time.RFC3339))}
	case j.StartWithin < 0:
		return &ArgError{"start_within", "must not be negative"}
	case j.SampleSize < 0 || j.SampleSize > MaxSampleSize:
		return &ArgError{"sample_size", fmt.Sprintf("want 0 to %d, got %d", MaxSampleSize, j.SampleSize)}
	case j.StartWithin > 0 && !j.Start:
		return &ArgError{"start_within", "only with start"}
	}
	return nil
}

func (j *Job) setDefaults() {
	if j.StartWithin == 0 {
		j.StartWithin = DefaultStartWithin
	}
	if j.SampleSize == 0 {
		j.SampleSize = DefaultSampleSize
	}
}

// Progress is where a running backfill is.
type Progress struct {
	// Read of Total records of the replayed range are processed (committed by the stage).
	Read, Total int64
	// Matches found so far.
	Matches int64
	// PartitionsDone of Partitions reached their end offsets.
	PartitionsDone, Partitions int
}

// Day is one event-time day (UTC) of the report.
type Day struct {
	Date    string // 2006-01-02
	Matches int64
	// Started reaches (with Job.Start): those that did not exist yet.
	Started int64
}

// Report is what a backfill found, and started.
type Report struct {
	RuleID      string
	RuleVersion int
	// Since and Until bound the replay: Until is the backfill's beginning, when the end offsets
	// were taken.
	Since, Until time.Time
	// Records replayed (between the start and end offsets of every partition).
	Records int64
	Matches int64
	// Days holds the days with matches, oldest first.
	Days []Day
	// Sample is the first matches found (up to Job.SampleSize), oldest event first.
	Sample []workflows.Match
	// With Job.Start: the matches at or after StartAfter were started (Started) or found started
	// already (Existing, by live matching or an earlier backfill); TooOld were only reported.
	StartAfter        time.Time
	Started, Existing int64
	TooOld            int64
}

// tally counts matches per event-time day and keeps a sample and the ones to start; each match
// (reach ID) counts once, however often the stage hands it over.
type tally struct {
	sampleSize int
	startAfter time.Time // zero: start nothing
	seen       map[string]bool
	days       map[string]*Day
	sample     []workflows.Match
	recent     []workflows.Match
	tooOld     int64
}

func newTally(sampleSize int, startAfter time.Time) *tally {
	return &tally{sampleSize: sampleSize, startAfter: startAfter, seen: map[string]bool{}, days: map[string]*Day{}}
}

func day(m workflows.Match) string { return m.EventTime.UTC().Format(time.DateOnly) }

func (t *tally) add(m workflows.Match) {
	id := workflows.ReachID(m.RuleID, m.UserID, m.MatchKey)
	if t.seen[id] {
		return
	}
	t.seen[id] = true
	d := t.days[day(m)]
	if d == nil {
		d = &Day{Date: day(m)}
		t.days[d.Date] = d
	}
	d.Matches++
	t.sample = append(t.sample, m)
	if len(t.sample) > 2*t.sampleSize {
		t.trimSample()
	}
	switch {
	case t.startAfter.IsZero():
	case m.EventTime.Before(t.startAfter):
		t.tooOld++
	default:
		t.recent = append(t.recent, m)
	}
}

// trimSample keeps the sampleSize oldest matches (by event time, then reach ID: the same history
// gives the same sample whatever the partitions' interleaving).
func (t *tally) trimSample() {
	slices.SortFunc(t.sample, func(a, b workflows.Match) int {
		if c := a.EventTime.Compare(b.EventTime); c != 0 {
			return c
		}
		return compareStrings(workflows.ReachID(a.RuleID, a.UserID, a.MatchKey), workflows.ReachID(b.RuleID, b.UserID, b.MatchKey))
	})
	t.sample = t.sample[:min(len(t.sample), t.sampleSize)]
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (t *tally) matches() int64 { return int64(len(t.seen)) }

// report fills the matches' part of r.
func (t *tally) report(r *Report) {
	t.trimSample()
	r.Sample = slices.Clone(t.sample)
	r.Matches = t.matches()
	r.Days = make([]Day, 0, len(t.days))
	for _, d := range t.days {
		r.Days = append(r.Days, *d)
	}
	slices.SortFunc(r.Days, func(a, b Day) int { return compareStrings(a.Date, b.Date) })
	r.TooOld = t.tooOld
}

// started counts a reach started for m in its day.
func (r *Report) started(m workflows.Match) {
	r.Started++
	for i := range r.Days {
		if r.Days[i].Date == day(m) {
			r.Days[i].Started++
		}
	}
}
