package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// runKafka serves the Kafka protocol on 127.0.0.1 with state persisted under -data, so topics,
// records and committed group offsets survive a restart.
func runKafka(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("kafka", flag.ContinueOnError)
	dataDir := fs.String("data", "", "data directory (required)")
	port := fs.Int("port", 9092, "listen port on 127.0.0.1")
	partitions := fs.Int("partitions", 4, "partitions of the seeded topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("-data is required")
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := portFree(*port); err != nil {
		return err
	}
	c, err := kfake.NewCluster(
		kfake.Ports(*port),
		kfake.DataDir(*dataDir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
		// Tests use short group sessions so rebalances and closes take milliseconds.
		kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(int32(*partitions), "omega.events", "omega.events.dlq"),
	)
	if err != nil {
		return fmt.Errorf("start kafka broker: %w", err)
	}
	log.Info("kafka broker ready", "addrs", c.ListenAddrs(), "data", *dataDir)
	<-ctx.Done()
	c.Close()
	log.Info("kafka broker stopped")
	return nil
}

// portFree fails with a clear message when another process holds the port.
func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d is taken (set the port variable to another value): %w", port, err)
	}
	return l.Close()
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
