package workflows_test

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/workflows"
)

func TestReachID(t *testing.T) {
	tests := []struct {
		name                     string
		ruleID, userID, matchKey string
		want                     string
	}{
		{name: "rule match", ruleID: "r", userID: "u", matchKey: "k", want: "reach/r/u/k"},
		{name: "api trigger", ruleID: workflows.APIRuleID, userID: "u1", matchKey: "order-7", want: "reach/api/u1/order-7"},
		{name: "printable ASCII kept as it is", ruleID: "r", userID: "a b+c~", matchKey: "e:1", want: "reach/r/a b+c~/e:1"},
		{name: "non-ASCII user percent-encoded", ruleID: "r", userID: "zoë", matchKey: "e1", want: "reach/r/zo%C3%AB/e1"},
		{name: "control and invalid bytes", ruleID: "r", userID: "u", matchKey: "e\x00\xff\n", want: "reach/r/u/e%00%FF%0A"},
		{name: "percent escaped, so no other user shares the ID", ruleID: "r", userID: "zo%C3%AB", matchKey: "e1",
			want: "reach/r/zo%25C3%25AB/e1"},
	}
	long := strings.Repeat("ë", 128) // 256 bytes, 768 once encoded
	tests = append(tests, struct {
		name                     string
		ruleID, userID, matchKey string
		want                     string
	}{name: "past Temporal's 1,000 bytes once encoded: hashed", ruleID: "r", userID: long, matchKey: long,
		want: "reach/r/sha256/" + fmt.Sprintf("%x", sha256.Sum256([]byte(long+"\x00"+long)))})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := workflows.ReachID(tt.ruleID, tt.userID, tt.matchKey)
			require.Equal(t, tt.want, id)
			require.LessOrEqual(t, len(id), 1000, "Temporal's limit on a workflow ID")
			for i := range len(id) {
				require.True(t, id[i] >= 0x20 && id[i] <= 0x7e, "byte %d of %q is not printable ASCII (a gRPC header value)", i, id)
			}
		})
	}
}
