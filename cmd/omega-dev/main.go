// Command omega-dev runs the parts of the local stack that no Debian package provides: a Temporal
// server (SQLite file persistence, or PostgreSQL with -pg) with its Web UI, and a Kafka-protocol broker (kfake) with a data
// directory. It exists for `make run` and `make test` only; production binaries never import the
// Temporal server, whose build is heavy.
//
//	omega-dev temporal -data DIR -port 7233 -ui-port 8233 [-pg postgres://postgres@127.0.0.1:5432 -shards 4]
//	omega-dev kafka    -data DIR -port 9092
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: omega-dev temporal|kafka [flags]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch os.Args[1] {
	case "temporal":
		err = runTemporal(ctx, log, os.Args[2:])
	case "kafka":
		err = runKafka(ctx, log, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want temporal or kafka)", os.Args[1])
	}
	if err != nil {
		log.Error("omega-dev failed", "cmd", os.Args[1], "err", err)
		os.Exit(1)
	}
}
