package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/metrics"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The probes and the metrics on one port: not ready until MarkReady.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metrics.Serve(ctx, addr, slog.New(slog.DiscardHandler))
	require.Eventually(t, func() bool { code, _ := get(t, "http://"+addr+"/healthz"); return code == 200 }, 5*time.Second, 20*time.Millisecond)
	code, _ := get(t, "http://"+addr+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	metrics.MarkReady()
	code, _ = get(t, "http://"+addr+"/readyz")
	require.Equal(t, http.StatusOK, code)
	metrics.Sends.WithLabelValues("push", "sent").Inc()
	code, body := get(t, "http://"+addr+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.Contains(body, `omega_sends_total{channel="push",outcome="sent"} 1`), body[:min(len(body), 500)])
	require.Contains(t, body, "go_goroutines")
}
