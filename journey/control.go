package journey

import (
	"crypto/sha256"
	"encoding/binary"
)

// ControlGroup is the outcome (and the funnel's path) of a reach held out of a marketing journey
// by the global control group: it sends nothing, and its user's conversions are counted to
// compare with the users reached.
const ControlGroup = "control"

// InControlGroup reports whether user is in the global control group of percent percent of all
// users (0 to 100, to a hundredth of a percent). Membership is stable (a user is in or out of
// every marketing journey, in every process) and independent of split paths (another hash).
func InControlGroup(userID string, percent float64) bool {
	if percent <= 0 {
		return false
	}
	sum := sha256.Sum256([]byte("omega-control-group\x00" + userID))
	return binary.BigEndian.Uint64(sum[:8])%10_000 < uint64(percent*100)
}

// Marketing reports whether the journey sends any marketing message (a send's category is
// marketing unless it says transactional): the global control group holds users out of these.
func (j *Journey) Marketing() bool {
	for _, s := range j.Steps {
		if s.Send != nil && s.Send.Category != "transactional" {
			return true
		}
	}
	return false
}
