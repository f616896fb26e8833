package cep

import (
	"fmt"
	"strings"
	"time"

	"github.com/omegareach/omega/internal/metrics"
	"github.com/omegareach/omega/workflows"
)

// staleTag begins the reason of a match suppressed as stale (Match.Suppressed).
const staleTag = "stale: "

// isStale reports whether a suppressed match's reason is staleness, not its rule's re-entry policy.
func isStale(suppressed string) bool { return strings.HasPrefix(suppressed, staleTag) }

// staleReason says why m is too stale to start its reach ("" when it is not; Config.MaxMatchAge):
// an absence fallen due longer than maxAge before progress, the event time (ms) its partition
// (or, for a shared absence, the group) had reached; another match completed by an event that
// happened longer than maxAge before Kafka took it.
func staleReason(m *workflows.Match, progress int64, maxAge time.Duration) string {
	if maxAge <= 0 {
		return ""
	}
	if !m.Due.IsZero() {
		if late := time.UnixMilli(progress).Sub(m.Due); progress > 0 && late > maxAge {
			return fmt.Sprintf(staleTag+"the absence fell due %s before the event time its partition had reached, more than %s (OMEGA_CEP_MAX_MATCH_AGE): "+
				"its first event came that late", roundAge(late), maxAge)
		}
		return ""
	}
	if late := m.ReceivedAt.Sub(m.EventTime); !m.ReceivedAt.IsZero() && !m.EventTime.IsZero() && late > maxAge {
		return fmt.Sprintf(staleTag+"its event happened %s before Kafka took it, more than %s (OMEGA_CEP_MAX_MATCH_AGE): a reach now would come too late",
			roundAge(late), maxAge)
	}
	return ""
}

// roundAge is an age as people read it: to the second, or to the hour past a day.
func roundAge(d time.Duration) time.Duration {
	if d > 24*time.Hour {
		return d.Round(time.Hour)
	}
	return d.Round(time.Second)
}

// markStale suppresses the matches too stale to start (staleReason), progress the partition's
// watermark (ms); they are audited as suppressed, with the reason, and counted
// (omega_cep_matches_total{mode="stale"}).
func (s *Stage) markStale(ms []workflows.Match, progress int64) {
	for i := range ms {
		m := &ms[i]
		if m.Shadow || m.Suppressed != "" {
			continue
		}
		if reason := staleReason(m, progress, s.cfg.MaxMatchAge); reason != "" {
			m.Suppressed = reason
			metrics.Matches.WithLabelValues(m.RuleID, "stale").Inc()
		}
	}
}
