#!/usr/bin/env bash
# The local stack: Redis and PostgreSQL from Debian packages, and the Temporal server (with its Web
# UI) and a Kafka-protocol broker from bin/omega-dev, each a process with its data under $OMEGA_DATA.
#
#   stack.sh up       start whatever is not running (data survives down + up)
#   stack.sh down     stop every process this stack started (the apps of `make run` included)
#   stack.sh status   show what runs
#   stack.sh env      print the OMEGA_* variables the omega binary and the tests read
#
# Ports come from OMEGA_*_PORT (defaults in the table below); a taken port fails with its name.
# OMEGA_REDIS_CLUSTER_PORT=P adds a three-node Redis Cluster on ports P, P+1, P+2 (cluster bus on
# P+10000..P+10002) beside the single Redis; the test stack always starts it, `make run` only when set.
# OMEGA_TEMPORAL_DB=postgres persists Temporal to the PostgreSQL above (the benchmark does); SQLite otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA=${OMEGA_DATA:-/var/lib/omega}
BIN=${OMEGA_BIN:-$ROOT/bin}
API_PORT=${OMEGA_API_PORT:-8080}
TEMPORAL_PORT=${OMEGA_TEMPORAL_PORT:-7233}
UI_PORT=${OMEGA_UI_PORT:-8233}
KAFKA_PORT=${OMEGA_KAFKA_PORT:-9092}
REDIS_PORT=${OMEGA_REDIS_PORT:-6379}
CLUSTER_PORT=${OMEGA_REDIS_CLUSTER_PORT:-}
PG_PORT=${OMEGA_PG_PORT:-5432}
RECEIVER_PORT=${OMEGA_RECEIVER_PORT:-8090}
RUN=$DATA/run
LOG=$DATA/log

say() { printf '%s\n' "$*" >&2; }
die() { say "stack: $*"; exit 1; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

# Install Redis and PostgreSQL when missing (Debian); elsewhere say what to install.
ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "stack: installing ${missing[*]} from Debian packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The packages start system-wide services on the default ports; this stack runs its own.
    for s in redis-server postgresql; do
      command -v systemctl >/dev/null && systemctl stop "$s" >/dev/null 2>&1 || true
      command -v service >/dev/null && service "$s" stop >/dev/null 2>&1 || true
    done
  else
    die "missing ${missing[*]}: install Redis 7 and PostgreSQL 15 (Debian: apt-get install redis-server postgresql)"
  fi
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_port() { # name port
  if listening "$2"; then die "port $2 for $1 is taken: stop what holds it or set OMEGA_$(echo "$1" | tr a-z A-Z)_PORT"; fi
}

wait_port() { # name port seconds logfile
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    listening "$2" && return 0
    sleep 0.1
  done
  say "stack: $1 did not open port $2 within $3s; last lines of $4:"
  tail -n 20 "$4" >&2 || true
  exit 1
}

wait_ready() { # name file seconds logfile
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [ -e "$2" ] && return 0
    alive "$1" || break
    sleep 0.1
  done
  say "stack: $1 did not serve within $3s; last lines of $4:"
  tail -n 20 "$4" >&2 || true
  exit 1
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start_daemon name port command...: a background process with a pid file and a log; port "-"
# for a process that listens on none (it must still be alive a second later).
start_daemon() {
  local name=$1 port=$2
  shift 2
  if alive "$name"; then say "stack: $name already running"; return 0; fi
  [ "$port" = - ] || need_port "$name" "$port"
  nohup "$@" >>"$LOG/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  if [ "$port" = - ]; then
    sleep 1
    alive "$name" || { tail -n 20 "$LOG/$name.log" >&2; die "$name exited at start"; }
  else
    wait_port "$name" "$port" 60 "$LOG/$name.log"
  fi
}

as_postgres() {
  # From / : the postgres user may not be able to enter the caller's directory.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Persistence as the CEP stage's state store wants it (docs/cep-state.md, "Redis settings"): the
# append-only file, fsynced every second, is the store of record; no periodic RDB snapshot on top
# (a rewrite of the AOF already writes an RDB base); and a rewrite only once the AOF has grown
# 512 MB past its base, not 64: the stage writes its changelog through at about 130 bytes per
# event, and each rewrite forks a child that takes a core from the stage for as long as it writes
# the dataset out (at 48,000 events/s on two shared cores, the default's rewrite every ten
# seconds and a save a minute put produce -> start p99 at 190-630 ms; without them, 33-70 ms).
REDIS_PERSIST=(--appendonly yes --appendfsync everysec --save "" --auto-aof-rewrite-min-size 512mb)

start_redis() {
  if alive redis; then say "stack: redis already running"; return 0; fi
  need_port redis "$REDIS_PORT"
  mkdir -p "$DATA/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" "${REDIS_PERSIST[@]}" \
    --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$LOG/redis.log" >/dev/null
  wait_port redis "$REDIS_PORT" 20 "$LOG/redis.log"
}

cluster_ports() { echo "$CLUSTER_PORT" $((CLUSTER_PORT + 1)) $((CLUSTER_PORT + 2)); }

cluster_state_ok() { # port
  redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# A three-node Redis Cluster, no replicas: every node its own directory, its nodes.conf kept there,
# so `down` + `up` brings back the same cluster (created once, never again on the same data).
start_redis_cluster() {
  [ -n "$CLUSTER_PORT" ] || return 0
  [[ $CLUSTER_PORT =~ ^[0-9]+$ ]] && [ "$CLUSTER_PORT" -ge 1024 ] && [ $((CLUSTER_PORT + 10002)) -le 65535 ] ||
    die "OMEGA_REDIS_CLUSTER_PORT=$CLUSTER_PORT: want a port from 1024 to 55533 (its cluster bus is 10000 above)"
  local i=0 p dir addrs=() slots=0 n
  for p in $(cluster_ports); do
    addrs+=("127.0.0.1:$p")
    if alive "redis-cluster-$i"; then i=$((i + 1)); continue; fi
    need_port "redis_cluster" "$p"
    need_port "redis_cluster" $((p + 10000))
    dir=$DATA/redis-cluster/$i
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$p" --dir "$dir" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 "${REDIS_PERSIST[@]}" \
      --daemonize yes --pidfile "$RUN/redis-cluster-$i.pid" --logfile "$LOG/redis-cluster-$i.log" >/dev/null
    i=$((i + 1))
  done
  i=0
  for p in $(cluster_ports); do
    wait_port "redis-cluster-$i" "$p" 20 "$LOG/redis-cluster-$i.log"
    n=$(redis-cli -h 127.0.0.1 -p "$p" cluster info | sed -n 's/^cluster_slots_assigned:\([0-9]*\).*/\1/p')
    slots=$((slots + ${n:-0}))
    i=$((i + 1))
  done
  if [ "$slots" -eq 0 ]; then
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$LOG/redis-cluster-create.log" 2>&1 ||
      { tail -n 20 "$LOG/redis-cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  for ((i = 0; i < 300; i++)); do
    n=0
    for p in $(cluster_ports); do cluster_state_ok "$p" && n=$((n + 1)); done
    [ "$n" -eq 3 ] && return 0
    sleep 0.1
  done
  for p in $(cluster_ports); do say "stack: redis cluster node $p: $(redis-cli -h 127.0.0.1 -p "$p" cluster info | grep -E '^cluster_(state|slots_assigned|known_nodes)' | tr -d '\r' | tr '\n' ' ')"; done
  die "the redis cluster is not ok after 30s (created on other ports, or half-created? remove $DATA/redis-cluster and start again)"
}

start_postgres() {
  local bin pg=$DATA/postgres
  bin=$(pg_bin)
  if [ -f "$pg/data/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$pg/data" status >/dev/null 2>&1; then
    say "stack: postgres already running"; return 0
  fi
  need_port postgres "$PG_PORT"
  mkdir -p "$pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$pg"
  as_postgres test -w "$pg" ||
    die "the postgres user cannot write $pg (a parent directory is not searchable by others): set OMEGA_DATA to a directory under /var/lib or /tmp"
  if [ ! -f "$pg/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$pg/data" -U postgres --auth=trust -E UTF8 >"$LOG/initdb.log" 2>&1 ||
      { tail -n 20 "$LOG/initdb.log" >&2; die "initdb failed"; }
  fi
  as_postgres "$bin/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pg -c max_connections=200" start >/dev/null ||
    { tail -n 20 "$pg/postgres.log" >&2; die "postgres did not start"; }
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='omega'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE omega" >/dev/null
  fi
}

stop_pid() { # name
  local pid i
  [ -f "$RUN/$1.pid" ] || return 0
  pid=$(cat "$RUN/$1.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { say "stack: $1 ignored SIGTERM, killing"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$RUN/$1.pid"
  say "stack: stopped $1"
}

up() {
  ensure_packages
  [ -x "$BIN/omega-dev" ] || die "$BIN/omega-dev is missing: run make build-dev"
  mkdir -p "$RUN" "$LOG"
  start_redis
  start_redis_cluster
  start_postgres
  start_daemon kafka "$KAFKA_PORT" "$BIN/omega-dev" kafka -data "$DATA/kafka" -port "$KAFKA_PORT"
  # OMEGA_TEMPORAL_DB=postgres: Temporal persists to the stack's PostgreSQL (databases temporal and
  # temporal_visibility, OMEGA_TEMPORAL_SHARDS history shards) instead of a SQLite file.
  local store=()
  if [ "${OMEGA_TEMPORAL_DB:-sqlite}" = postgres ]; then
    store=(-pg "postgres://postgres@127.0.0.1:$PG_PORT" -shards "${OMEGA_TEMPORAL_SHARDS:-4}")
  fi
  [ -z "${OMEGA_TEMPORAL_PPROF_PORT:-}" ] || store+=(-pprof-port "$OMEGA_TEMPORAL_PPROF_PORT")
  if ! alive temporal; then
    rm -f "$RUN/temporal.ready"
    start_daemon temporal "$TEMPORAL_PORT" "$BIN/omega-dev" temporal -data "$DATA/temporal" -port "$TEMPORAL_PORT" -ui-port "$UI_PORT" \
      -ready-file "$RUN/temporal.ready" ${store[@]+"${store[@]}"}
    # An open frontend port is not yet a Temporal that runs workflows: the server writes the file
    # once its history and matching services answer.
    wait_ready temporal "$RUN/temporal.ready" 60 "$LOG/temporal.log"
  else
    say "stack: temporal already running"
  fi
  [ "$UI_PORT" = 0 ] || wait_port temporal-ui "$UI_PORT" 30 "$LOG/temporal.log"
  say "stack: up (data in $DATA)"
  say "  temporal    127.0.0.1:$TEMPORAL_PORT   web ui http://127.0.0.1:$UI_PORT (0: off), store ${OMEGA_TEMPORAL_DB:-sqlite}"
  say "  kafka       127.0.0.1:$KAFKA_PORT"
  say "  redis       127.0.0.1:$REDIS_PORT"
  [ -z "$CLUSTER_PORT" ] || say "  redis cluster 127.0.0.1:$(cluster_ports | sed 's/ /,127.0.0.1:/g')"
  say "  postgresql  127.0.0.1:$PG_PORT (database omega, user postgres)"
}

down() {
  [ -d "$RUN" ] || { say "stack: nothing runs under $DATA"; return 0; }
  local f
  # The apps first (they hold connections), then the servers: the intake, the CEP stage and the
  # workers in that order, each letting what it has in flight finish (a worker its workflow tasks,
  # whose sends need the receiver), then the others (the receiver: the providers' stand-in).
  for f in "$RUN"/app-api.pid "$RUN"/app-cep.pid "$RUN"/app-worker*.pid "$RUN"/app-*.pid; do
    [ -e "$f" ] && stop_pid "$(basename "$f" .pid)"
  done
  stop_pid temporal
  stop_pid kafka
  stop_pid redis
  for f in "$RUN"/redis-cluster-*.pid; do [ -e "$f" ] && stop_pid "$(basename "$f" .pid)"; done
  local bin
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$DATA/postgres/data/postmaster.pid" ]; then
    as_postgres "$bin/pg_ctl" -D "$DATA/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
    say "stack: stopped postgres"
  fi
}

status() {
  local n
  local nodes=()
  if [ -n "$CLUSTER_PORT" ]; then
    nodes=(redis-cluster-0 redis-cluster-1 redis-cluster-2)
  else
    for f in "$RUN"/redis-cluster-*.pid; do [ -e "$f" ] && nodes+=("$(basename "$f" .pid)"); done
  fi
  for n in redis ${nodes[@]+"${nodes[@]}"} kafka temporal; do
    if alive "$n"; then echo "$n running (pid $(cat "$RUN/$n.pid"))"; else echo "$n stopped"; fi
  done
  if [ -n "$CLUSTER_PORT" ] && alive redis-cluster-0; then
    echo "redis cluster $(redis-cli -h 127.0.0.1 -p "$CLUSTER_PORT" cluster info 2>/dev/null | grep '^cluster_state:' | tr -d '\r')"
  fi
  if [ -f "$DATA/postgres/data/postmaster.pid" ]; then echo "postgres running"; else echo "postgres stopped"; fi
  for f in "$RUN"/app-*.pid; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .pid)
    if alive "$n"; then echo "${n#app-} running (pid $(cat "$f"))"; else echo "${n#app-} stopped"; fi
  done
}

env_vars() {
  cat <<ENV
export OMEGA_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export OMEGA_REDIS_ADDR=127.0.0.1:$REDIS_PORT
export OMEGA_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/omega?sslmode=disable
export OMEGA_TEMPORAL_ADDR=127.0.0.1:$TEMPORAL_PORT
export OMEGA_API_ADDR=127.0.0.1:$API_PORT
export OMEGA_RECEIVER_ADDR=127.0.0.1:$RECEIVER_PORT
export OMEGA_WEBHOOK_URL=http://127.0.0.1:$RECEIVER_PORT/deliveries
export OMEGA_WEBHOOK_ALLOW=127.0.0.0/8
ENV
  # The cluster's nodes, as seeds (OMEGA_REDIS_ADDR takes the same list to run Omega on it).
  [ -z "$CLUSTER_PORT" ] || echo "export OMEGA_REDIS_CLUSTER_ADDRS=127.0.0.1:$(cluster_ports | sed 's/ /,127.0.0.1:/g')"
  # The development key make run creates (admin scope), for curl and the omega CLI.
  if [ -s "$DATA/dev-api-key" ]; then echo "export OMEGA_API_KEY=$(cat "$DATA/dev-api-key")"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_vars ;;
  start-app) shift; mkdir -p "$RUN" "$LOG"; start_daemon "app-$1" "$2" "${@:3}" ;;
  *) die "usage: stack.sh up|down|status|env" ;;
esac
