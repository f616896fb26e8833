package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	persistencesql "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/resolver"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"

	"github.com/omegareach/omega/worker"
	"github.com/omegareach/omega/workflows"
)

const namespace = "default"

// runTemporal runs a single-process Temporal server persisted to a SQLite file under -data, the
// "default" namespace with the reach search attributes, and the Web UI.
func runTemporal(ctx context.Context, log *slog.Logger, args []string) error {
	start := time.Now()
	fs := flag.NewFlagSet("temporal", flag.ContinueOnError)
	dataDir := fs.String("data", "", "data directory (required)")
	port := fs.Int("port", 7233, "frontend gRPC port on 127.0.0.1")
	uiPort := fs.Int("ui-port", 8233, "Web UI port on 127.0.0.1 (0 disables the UI)")
	logLevel := fs.String("log-level", "warn", "server log level")
	pgURL := fs.String("pg", "", "persist to this PostgreSQL server (postgres://user@host:port) instead of a SQLite file")
	shards := fs.Int("shards", 1, "history shards (fixed once the store is created)")
	pprofPort := fs.Int("pprof-port", 0, "serve Go profiles of the server on this port (0: off)")
	readyFile := fs.String("ready-file", "", "write this file once the server serves workflows (history and matching answer), remove it at exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("-data is required")
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	for _, p := range []int{*port, *uiPort} {
		if p == 0 {
			continue
		}
		if err := portFree(p); err != nil {
			return err
		}
	}

	cfg, err := serverConfig(filepath.Join(*dataDir, "temporal.db"), *port, *shards, *pgURL != "")
	if err != nil {
		return err
	}
	cfg.Global.PProf.Port = *pprofPort
	sqlCfg := cfg.Persistence.DataStores[sqliteplugin.PluginName].SQL
	if *pgURL != "" {
		store, vis, err := postgresStores(ctx, *pgURL)
		if err != nil {
			return err
		}
		cfg.Persistence.DefaultStore, cfg.Persistence.VisibilityStore = pgStore, pgVisibility
		cfg.Persistence.DataStores = map[string]config.DataStore{pgStore: {SQL: store}, pgVisibility: {SQL: vis}}
		sqlCfg = store
	} else if _, err := os.Stat(sqlCfg.DatabaseName); errors.Is(err, os.ErrNotExist) {
		if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
			return fmt.Errorf("set up sqlite schema: %w", err)
		}
	}
	sas := map[string]enumspb.IndexedValueType{}
	for _, k := range workflows.SearchAttributes {
		sas[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	ns, err := sqliteschema.NewNamespaceConfig(cfg.ClusterMetadata.CurrentClusterName, namespace, false, sas)
	if err != nil {
		return fmt.Errorf("namespace config: %w", err)
	}
	// Written straight into the store (SQLite or PostgreSQL alike) before the server starts.
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}

	// The previous run's hosts are still in the membership table, heartbeats a few seconds old, on
	// ports picked afresh this time: ringpop would try to join them and the services would not
	// serve for up to a minute. This process is its cluster's only member, so they all go.
	if err := clearMembership(sqlCfg); err != nil {
		return err
	}

	zl := tlog.NewZapLogger(tlog.BuildZapLogger(tlog.Config{Stdout: true, Level: *logLevel}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return fmt.Errorf("authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, zl)
	if err != nil {
		return fmt.Errorf("claim mapper: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(zl),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicClient(*pgURL != "")),
	)
	if err != nil {
		return fmt.Errorf("new temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start temporal server: %w", err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			log.Warn("stop temporal server", "err", err)
		}
	}()
	hostPort := fmt.Sprintf("127.0.0.1:%d", *port)
	c, err := client.DialContext(ctx, client.Options{HostPort: hostPort, Namespace: namespace})
	if err != nil {
		return fmt.Errorf("dial temporal: %w", err)
	}
	defer c.Close()
	if err := ensureSearchAttributes(ctx, c, sas); err != nil {
		return err
	}
	if err := worker.WaitServing(ctx, c, workflows.TaskQueue, ""); err != nil {
		return fmt.Errorf("temporal does not serve: %w", err)
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ready\n"), 0o644); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
		defer os.Remove(*readyFile)
	}

	if *uiPort != 0 {
		ui := uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host:                "127.0.0.1",
			Port:                *uiPort,
			TemporalGRPCAddress: hostPort,
			EnableUI:            true,
			DefaultNamespace:    namespace,
			DisableNewsFetch:    true,
			HideLogs:            true,
		}))
		go func() {
			if err := ui.Start(); err != nil {
				log.Error("temporal ui stopped", "err", err)
			}
		}()
		defer ui.Stop()
	}
	log.Info("temporal ready", "serving_after_start", time.Since(start).Round(time.Millisecond), "frontend", hostPort, "ui_port", *uiPort, "data", *dataDir, "store", cfg.Persistence.DefaultStore,
		"shards", cfg.Persistence.NumHistoryShards)
	<-ctx.Done()
	log.Info("temporal stopping")
	return nil
}

// clearMembership deletes every row of the cluster membership table of the store at cfg (SQLite
// or PostgreSQL, through the server's own SQL plugin).
func clearMembership(cfg *config.SQL) error {
	db, err := persistencesql.NewSQLAdminDB(sqlplugin.DbKindMain, cfg, resolver.NewNoopResolver(),
		tlog.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("open temporal store: %w", err)
	}
	defer db.Close()
	if err := db.Exec("DELETE FROM cluster_membership"); err != nil {
		return fmt.Errorf("clear the previous run's cluster membership: %w", err)
	}
	return nil
}

// ensureSearchAttributes registers any search attribute the namespace lacks: a database created
// by an older stack keeps working after a new attribute is added.
func ensureSearchAttributes(ctx context.Context, c client.Client, want map[string]enumspb.IndexedValueType) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	// Each service reads the namespace's attributes from its namespace registry, refreshed every
	// namespaceRefresh (the server is not told to read them from the store on every request: that
	// cost a seventh of its CPU in the pipeline benchmark). The frontend accepting a query on each
	// is the sign its registry has them; the other services refresh on the same interval.
	for name := range missing {
		q := fmt.Sprintf("%s = ''", name)
		for {
			_, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: q})
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("search attribute %s registered but not yet usable: %w", name, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(namespaceRefresh):
	}
	return nil
}

// namespaceRefresh is how often each service's namespace registry reads the namespaces
// (Temporal's system.namespaceCacheRefreshInterval, at its default).
const namespaceRefresh = 2 * time.Second

// serverConfig describes one process running all four Temporal services on loopback.
func serverConfig(dbPath string, port, shards int, lowPorts bool) (*config.Config, error) {
	// The other services' ports follow the frontend's, below the kernel's ephemeral range (32768
	// and up): a port the kernel picked is free when picked but may be taken, before Temporal binds
	// it, by any process's outgoing connection (a restart's ringpop listener once failed so:
	// "address already in use"). PostgreSQL keeps membership ports in a smallint anyway; with
	// SQLite a frontend port too high to follow falls back to ports the kernel picks.
	next := port + 1
	kernelPort := freePort
	freePort := func() (int, error) {
		for ; next < min(port+500, 32768); next++ {
			if portFree(next) == nil {
				next++
				return next - 1, nil
			}
		}
		if !lowPorts {
			return kernelPort()
		}
		return 0, fmt.Errorf("no free port between %d and %d", port+1, min(port+500, 32768))
	}
	svc := func(grpcPort int) (config.Service, error) {
		if grpcPort == 0 {
			p, err := freePort()
			if err != nil {
				return config.Service{}, err
			}
			grpcPort = p
		}
		mp, err := freePort()
		if err != nil {
			return config.Service{}, err
		}
		return config.Service{RPC: config.RPC{GRPCPort: grpcPort, MembershipPort: mp, BindOnLocalHost: true}}, nil
	}
	services := map[string]config.Service{}
	for name, p := range map[string]int{"frontend": port, "history": 0, "matching": 0, "worker": 0} {
		s, err := svc(p)
		if err != nil {
			return nil, fmt.Errorf("pick port for %s: %w", name, err)
		}
		services[name] = s
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	hostPort := fmt.Sprintf("127.0.0.1:%d", port)
	const clusterName = "active"
	return &config.Config{
		Global: config.Global{
			Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"},
			Metrics: &metrics.Config{Prometheus: &metrics.PrometheusConfig{
				ListenAddress: fmt.Sprintf("127.0.0.1:%d", metricsPort), HandlerPath: "/metrics",
			}},
		},
		Persistence: config.Persistence{
			DefaultStore:     sqliteplugin.PluginName,
			VisibilityStore:  sqliteplugin.PluginName,
			NumHistoryShards: int32(max(1, shards)),
			DataStores: map[string]config.DataStore{sqliteplugin.PluginName: {SQL: &config.SQL{
				PluginName:        sqliteplugin.PluginName,
				DatabaseName:      dbPath,
				ConnectAttributes: map[string]string{"mode": "rwc", "_journal_mode": "wal", "_synchronous": "2"},
			}}},
		},
		ClusterMetadata: &cluster.Config{
			FailoverVersionIncrement: 10,
			MasterClusterName:        clusterName,
			CurrentClusterName:       clusterName,
			ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
				Enabled: true, InitialFailoverVersion: 1, RPCAddress: hostPort,
			}},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services:            services,
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: hostPort},
	}, nil
}

// shardIOConcurrency is how many persistence writes a history shard has in flight on PostgreSQL
// (Temporal's default is 1). With a handful of shards on a small host, one write at a time per
// shard queues every start and workflow task behind the shard's previous write: starts took 25 to
// 800 ms at half the pipeline's peak. Writes to one workflow stay ordered by its own lock, and the
// shard's range ID fences them as before. SQLite keeps 1: it has one writer.
const shardIOConcurrency = 8

// historyCacheEntries bounds the history service's cache of workflows' mutable state. Temporal
// keeps up to 128,000 for an hour by default: with a reach per match, most of them closed within
// their first workflow task, the cache held every reach of the last hour (about 500 MB after a
// few minutes of the pipeline benchmark), and each garbage collection marked all of it: a second
// or two of a core every 20 seconds, during which the host's other servers (PostgreSQL, the CEP
// stage) waited and reaches were late. A reach still open (waiting for a response) is read back
// from the store when its response comes.
const historyCacheEntries = 4096

// dynamicClient is the server's dynamic configuration.
func dynamicClient(postgres bool) dynamicconfig.StaticClient {
	c := dynamicconfig.StaticClient{
		dynamicconfig.EnableEagerWorkflowStart.Key():              true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key(): true,
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():          historyCacheEntries,
		dynamicconfig.NamespaceCacheRefreshInterval.Key():         namespaceRefresh,
		// Every task goes to a task queue's root partition, which its other (read) partitions
		// forward their polls to. With four write partitions, a backlog waited in some while a
		// worker's few polls sat in the emptied others for their whole minute: tasks held up to
		// 60 s when a worker met a backlog (e2e TestBulkReachesRunBesideFreshOnes: 3 runs of 5,
		// on one queue as on two; none of 17 since). One partition is ample at this server's
		// rates; the read partitions stay, so a backlog written before (old data) is still read.
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
	}
	if postgres {
		c[dynamicconfig.ShardIOConcurrency.Key()] = shardIOConcurrency
	}
	return c
}
