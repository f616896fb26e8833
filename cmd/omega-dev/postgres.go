package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/server/common/config"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	sqltool "go.temporal.io/server/tools/sql"
)

// Databases of a Temporal server persisted to PostgreSQL.
const (
	pgStore      = "postgres"
	pgVisibility = "postgres-visibility"
)

// pgPoolConns bounds each of the server's connection pools (one per service and database: up to
// eight pools, 160 connections, under the stack's max_connections of 200).
const pgPoolConns = 20

// postgresStores returns the SQL stores of a Temporal server on the PostgreSQL server at rawURL
// (postgres://user[:password]@host:port), its databases created and their schemas brought to the
// version this server build expects (the schemas embedded in the server module).
func postgresStores(ctx context.Context, rawURL string) (store, visibility *config.SQL, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("-pg: %w", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	if _, err := strconv.Atoi(port); err != nil {
		return nil, nil, fmt.Errorf("-pg port %q: %w", port, err)
	}
	user := u.User.Username()
	password, _ := u.User.Password()
	// Every connection a pool opens is kept (MaxIdleConns = MaxConns). With fewer idle ones than
	// open ones, database/sql closes a connection whenever it is returned to a full idle list, so
	// under a load whose concurrency hovers between the two each burst opened connections and
	// each lull closed them: about one new PostgreSQL backend per reach at 23 reaches/s, each a
	// fork, a cold catalog cache and every statement prepared again.
	sqlCfg := func(db string) *config.SQL {
		return &config.SQL{PluginName: pgplugin.PluginNamePGX, DatabaseName: db, ConnectAddr: host + ":" + port,
			ConnectProtocol: "tcp", User: user, Password: password, MaxConns: pgPoolConns, MaxIdleConns: pgPoolConns}
	}
	for db, schema := range map[string]string{"temporal": "postgresql/v12/temporal", "temporal_visibility": "postgresql/v12/visibility"} {
		if err := createDatabase(ctx, u, db); err != nil {
			return nil, nil, err
		}
		// The schema tool exits the process on failure; deciding "fresh" by the version table
		// rather than by the database lets a start that died half-way be retried.
		fresh, err := noSchema(ctx, u, db)
		if err != nil {
			return nil, nil, err
		}
		base := []string{"temporal-sql-tool", "--plugin", pgplugin.PluginNamePGX, "--ep", host, "-p", port, "-u", user, "--db", db}
		if password != "" {
			base = append(base, "--pw", password)
		}
		if fresh {
			if err := sqltool.RunTool(append(base, "setup-schema", "-v", "0.0")); err != nil {
				return nil, nil, fmt.Errorf("set up %s schema: %w", db, err)
			}
		}
		if err := sqltool.RunTool(append(base, "update-schema", "--schema-name", schema)); err != nil {
			return nil, nil, fmt.Errorf("update %s schema: %w", db, err)
		}
	}
	return sqlCfg("temporal"), sqlCfg("temporal_visibility"), nil
}

// createDatabase creates db unless it exists.
func createDatabase(ctx context.Context, u *url.URL, db string) error {
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("connect to postgres at %s: %w", u.Host, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	return err
}

// noSchema reports whether db has no schema_version table yet (setup-schema has not run).
func noSchema(ctx context.Context, u *url.URL, db string) (bool, error) {
	d := *u
	d.Path = "/" + db
	conn, err := pgx.Connect(ctx, d.String())
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", db, err)
	}
	defer conn.Close(ctx)
	var reg *string
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_version')::text`).Scan(&reg); err != nil {
		return false, err
	}
	return reg == nil, nil
}
