package e2e_test

import (
	"bufio"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/metrics"
)

// scrape reads the process's /metrics as the Prometheus server would: series -> value.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(metrics.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// metricDeltas returns, for each series, how much it grew since before.
func metricDeltas(before, after map[string]float64, series ...string) map[string]float64 {
	d := map[string]float64{}
	for _, s := range series {
		d[s] = after[s] - before[s]
	}
	return d
}
