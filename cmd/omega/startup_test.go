package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
)

// A dependency that is down is waited for; one that refuses ends the wait at once.
func TestAwaitDependency(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := 0
	v, err := awaitDependency(context.Background(), log, "db", func() (int, error) {
		calls++
		if calls < 3 {
			return 0, errors.New("connection refused")
		}
		return 7, nil
	}, func(error) bool { return false })
	require.NoError(t, err)
	require.Equal(t, 7, v)
	require.Equal(t, 3, calls)

	calls = 0
	_, err = awaitDependency(context.Background(), log, "db", func() (int, error) {
		calls++
		return 0, errors.New("password authentication failed")
	}, func(error) bool { return true })
	require.Error(t, err)
	require.Equal(t, 1, calls, "a permanent refusal is not retried")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = awaitDependency(ctx, log, "db", func() (int, error) { return 0, errors.New("down") }, func(error) bool { return false })
	require.EqualError(t, err, "down", "the wait ends with its context, on the last error")
}

func TestPermanentClasses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"unreachable", errors.New("failed to connect to `user=postgres database=omega`: dial tcp: connection refused"), false},
		{"starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, false},
		{"bad password", &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, true},
		{"no such database, flattened by a library", errors.New(`failed to open database: FATAL: database "omg" does not exist (SQLSTATE 3D000)`), true},
		{"migration refused", fmt.Errorf("migrate: %w", &pgconn.PgError{Code: "42601"}), true},
		{"dirty schema", fmt.Errorf("migrate audit schema: %w", migrate.ErrDirty{Version: 3}), true},
	} {
		require.Equal(t, tc.permanent, pgPermanent(tc.err), "postgresql: %s", tc.name)
	}
	require.False(t, temporalPermanent(fmt.Errorf("failed reaching server: %w", serviceerror.NewUnavailable("connection refused"))))
	require.True(t, temporalPermanent(fmt.Errorf("failed reaching server: %w", serviceerror.NewPermissionDenied("no", ""))))
	require.True(t, temporalPermanent(errors.New("invalid TLS configuration")), "refused before any dial")
	require.False(t, kafkaPermanent(sarama.ErrOutOfBrokers))
	require.True(t, kafkaPermanent(fmt.Errorf("producer: %w", sarama.ConfigurationError("Net.SASL.User must not be empty"))))
}
