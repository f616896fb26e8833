package api_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/api"
)

// ServeTLS answers over HTTPS (HTTP/2 negotiated) and refuses plain HTTP; it stops when its
// context ends.
func TestServeTLS(t *testing.T) {
	ref := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate and a client trusting it
	ref.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.Proto)) })
	go func() {
		done <- api.ServeTLS(ctx, addr, h, &tls.Config{Certificates: ref.TLS.Certificates, MinVersion: tls.VersionTLS12}, slog.New(slog.DiscardHandler))
	}()
	roots := ref.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	var proto string
	require.Eventually(t, func() bool {
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b := make([]byte, 16)
		n, _ := resp.Body.Read(b)
		proto = string(b[:n])
		return true
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, "HTTP/2.0", proto)

	resp, err := http.Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP is not served")
	} else {
		require.False(t, strings.Contains(err.Error(), "HTTP/2.0"))
	}
	cancel()
	require.NoError(t, <-done)
}
