package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
)

// The reach workflow's contract: what starters pass in (Match, ReachInput), what it answers
// (statuses, State, ReachResult), its signals and queries, and its workflow IDs.

// Reach statuses, as kept in the ReachStatus search attribute and the final audit record: the
// journey machine's.
const (
	StatusRunning    = journey.StatusRunning
	StatusWaiting    = journey.StatusWaiting
	StatusSent       = journey.StatusSent
	StatusSuppressed = journey.StatusSuppressed
	StatusConverted  = journey.StatusConverted
	StatusFailed     = journey.StatusFailed
	StatusCancelled  = journey.StatusCancelled
	StatusCompleted  = journey.StatusCompleted
	// StatusHeldOut: the global control group held the user out (activities.RouteResult.HeldOut).
	StatusHeldOut = "held_out"
)

// Signals and queries of a reach run.
const (
	// SignalCancel asks a reach to stop; its payload is a CancelSignal.
	SignalCancel = "cancel"
	// SignalResponse delivers a response event (Response) the journey may wait for.
	SignalResponse = "response"
	// QueryState returns the run's State: current step, step history, responses.
	QueryState = "state"
)

// CancelSignal carries why a reach was cancelled.
type CancelSignal struct {
	Reason string `json:"reason"`
}

// Response is a response event routed to the run (push_open, chat_started, order_paid...): the
// journey machine's, the signal's payload.
type Response = journey.Response

// Match is what the CEP stage (or an API trigger) found: who to reach, because of which rule,
// through which journey.
type Match struct {
	RuleID      string `json:"rule_id"`
	RuleVersion int    `json:"rule_version,omitempty"`
	// CorrelationKey is the pattern key the rule matched on (user, user|item, ...).
	CorrelationKey string `json:"correlation_key,omitempty"`
	// Shadow matches are recorded and start nothing.
	Shadow    bool           `json:"shadow,omitempty"`
	UserID    string         `json:"user_id"`
	JourneyID string         `json:"journey_id"`
	MatchKey  string         `json:"match_key"`
	EventIDs  []string       `json:"event_ids,omitempty"`
	EventType string         `json:"event_type,omitempty"`
	ItemID    string         `json:"item_id,omitempty"`
	EventTime time.Time      `json:"event_time,omitzero"`
	MatchedAt time.Time      `json:"matched_at,omitzero"`
	Attrs     map[string]any `json:"attrs,omitempty"`
	// MaxOpen bounds the runs of the rule a user may have open at once (0: no bound).
	MaxOpen int `json:"max_open,omitempty"`
	// Rollout is the rule's gray rollout percentage (0: everyone).
	Rollout int `json:"rollout,omitempty"`
	// Chain is the rule's filter chain for sends that name none.
	Chain string `json:"chain,omitempty"`
	// TraceID is the W3C trace ID of the event that completed the match (its traceparent
	// header, else derived from its event ID); every tracking record of the reach carries it.
	TraceID string `json:"trace_id,omitempty"`
	// TraceParent is that event's traceparent header, when it had one: the workflow's spans join
	// the caller's trace under the right parent.
	TraceParent string `json:"trace_parent,omitempty"`
	// ReceivedAt is when Kafka took the event that completed the match (for an API trigger, the
	// call's time).
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// Suppressed says why the CEP stage starts nothing for this match (its rule's re-entry policy
	// holds the key for another reach): recorded in the audit trail, never started.
	Suppressed string `json:"suppressed,omitempty"`
	// Due is when an absence's match fell due (the end of its window); zero for the others,
	// whose ReceivedAt says when they did.
	Due time.Time `json:"due,omitzero"`
	// Bulk reaches start on the bulk task queue (BulkQueue): nobody waits for them this second
	// (late, overdue, one of a large fan-out, a backfill or broadcast), and they may be
	// thousands; fresh reaches do not queue behind them.
	Bulk bool `json:"bulk,omitempty"`
}

// ReachInput is the reach workflow's input.
type ReachInput struct {
	Match Match `json:"match"`
	// Lean runs take as few workflow tasks as they can (see changeSkipIdleRegister's neighbour
	// comment); NewReachInput sets it.
	Lean bool `json:"lean,omitempty"`
	// Rev is the revision of the run's behaviour it started under (NewReachInput: CurrentRev).
	// Changes to the run's commands or outcome are keyed on it, not on workflow.GetVersion, for
	// the reason Lean is: runs recorded before a change replay as they ran.
	Rev int `json:"rev,omitempty"`
	// Resume carries a run across continue-as-new.
	Resume *Resume `json:"resume,omitempty"`
	// MaxSteps is how many steps one run takes before it continues as new (DefaultMaxSteps when
	// zero); it also continues as new past maxHistory events or when the server suggests it.
	MaxSteps int `json:"max_steps,omitempty"`
}

// NewReachInput is the input of a new reach.
func NewReachInput(m Match) ReachInput { return ReachInput{Match: m, Lean: true, Rev: CurrentRev} }

// Revisions of the reach workflow's behaviour (ReachInput.Rev).
const (
	// RevWaitsAndDrops: a waiting record is audited as each wait begins, so the audit trail tells
	// a waiting reach from a running one; a run that sent something and whose next send the
	// filter chain drops ends as sent (the user was reached), not as suppressed.
	RevWaitsAndDrops = 1
	CurrentRev       = RevWaitsAndDrops
)

// DefaultMaxSteps and maxHistory keep histories far below Temporal's limits and quick to replay.
const (
	DefaultMaxSteps = 300
	maxHistory      = 2000
)

// Resume is what a continued run picks up: the pinned journey version, the profile and the state.
type Resume struct {
	Journey journey.Journey `json:"journey"`
	Profile profile.Profile `json:"profile"`
	State   State           `json:"state"`
}

// State is the run as the state query returns it.
type State struct {
	JourneyID      string `json:"journey_id"`
	JourneyVersion int    `json:"journey_version"`
	// Current is the step being run ("end" once done).
	Current string `json:"current"`
	Status  string `json:"status"`
	Channel string `json:"channel,omitempty"`
	// Sent counts the messages sent.
	Sent int `json:"sent"`
	// Steps is the step history (the most recent maxStepHistory).
	Steps     []StepRecord `json:"steps"`
	Responses []Response   `json:"responses,omitempty"`
	// Seen are the event IDs of the responses taken (the most recent maxSeen), so a redelivered
	// signal changes nothing.
	Seen   []string       `json:"seen,omitempty"`
	Visits map[string]int `json:"visits,omitempty"`
	// Runs counts the continue-as-new hops.
	Runs int `json:"runs,omitempty"`
}

// StepRecord is one step taken.
type StepRecord struct {
	Step    string    `json:"step"`
	Kind    string    `json:"kind"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

const (
	// indexTTL is how long a run's open-reach entry stays fresh; a wait that would outlast it
	// refreshes it first.
	indexTTL       = 30 * 24 * time.Hour
	maxStepHistory = 100
	maxSeen        = 1000
	maxResponses   = 100
	// maxDefers bounds how often one send is put off by the filter chain (quiet hours).
	maxDefers = 3
)

// ReachResult says what the reach did.
type ReachResult struct {
	Status  string         `json:"status"`
	Channel string         `json:"channel,omitempty"`
	Verdict filter.Verdict `json:"verdict"`
	Reason  string         `json:"reason,omitempty"`
	// Sent counts the messages sent.
	Sent int `json:"sent"`
}

// APIRuleID is the rule ID of reaches started through ReachService.Trigger.
const APIRuleID = "api"

// ReachID is the workflow ID of a match: replays of the same match collapse onto one run.
//
// Its parts are kept as they are when they are printable ASCII, as every ID was before; a byte
// outside it (a user "zoë", an event ID with a control character) and '%' itself are
// percent-encoded. Temporal carries the ID in a gRPC header (temporal-resource-id), whose values
// must be printable ASCII: a start it refused would be retried for ever and hold its partition.
// The encoding is one-to-one, so two users never share a reach.
//
// An ID that would pass Temporal's limit of 1,000 bytes (possible only once encoded: the wire
// contract bounds IDs to 256 bytes) names its user and key by their SHA-256 instead.
func ReachID(ruleID, userID, matchKey string) string {
	id := "reach/" + idPart(ruleID) + "/" + idPart(userID) + "/" + idPart(matchKey)
	if len(id) <= maxReachID {
		return id
	}
	h := sha256.Sum256([]byte(userID + "\x00" + matchKey))
	return "reach/" + idPart(ruleID) + "/sha256/" + hex.EncodeToString(h[:])
}

// maxReachID is Temporal's default limit on a workflow ID (limit.maxIDLength).
const maxReachID = 1000

// idPart percent-encodes the bytes of s outside printable ASCII, and '%'.
func idPart(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '%' {
		i++
	}
	if i == len(s) {
		return s
	}
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', digits[c>>4], digits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func (m Match) journeyMatch() journey.Match {
	return journey.Match{UserID: m.UserID, ItemID: m.ItemID, RuleID: m.RuleID, EventType: m.EventType,
		JourneyID: m.JourneyID, Attrs: m.Attrs}
}

// LastEvent is the event that completed the match.
func (m Match) LastEvent() string {
	if len(m.EventIDs) == 0 {
		return ""
	}
	return m.EventIDs[len(m.EventIDs)-1]
}

func receiveReason(m Match) string {
	if m.RuleID == APIRuleID {
		return "trigger call received"
	}
	return fmt.Sprintf("%s event %s received", m.EventType, m.LastEvent())
}

func matchReason(m Match) string {
	if m.RuleID == APIRuleID {
		return "triggered through the API"
	}
	return fmt.Sprintf("rule %s matched %s event(s) %v", m.RuleID, m.EventType, m.EventIDs)
}
