package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/omegareach/omega/activities/channel"
)

func runReceiver(ctx context.Context, log *slog.Logger, cfg config) error {
	srv := &http.Server{Addr: cfg.receiverAddr, Handler: channel.NewReceiver(log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("receiver listening", "addr", cfg.receiverAddr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// probe is a health check for images without curl: omega probe http://127.0.0.1:9464/readyz.
func probe(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: omega probe URL")
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}
