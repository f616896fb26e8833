package workflows_test

import (
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, workflows.ReachID(tt.ruleID, tt.userID, tt.matchKey))
		})
	}
}
