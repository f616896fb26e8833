#!/usr/bin/env bash
# Runs a command (by default the whole test suite) against a fresh, throw-away stack on test ports,
# so `make test` needs nothing running and does not disturb a `make run` stack.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export OMEGA_DATA=${OMEGA_TEST_DATA:-$(mktemp -d /tmp/omega-test.XXXXXX)}
chmod 755 "$OMEGA_DATA"
export OMEGA_TEMPORAL_PORT=${OMEGA_TEST_TEMPORAL_PORT:-17233}
export OMEGA_UI_PORT=0
export OMEGA_KAFKA_PORT=${OMEGA_TEST_KAFKA_PORT:-19092}
export OMEGA_REDIS_PORT=${OMEGA_TEST_REDIS_PORT:-16379}
# The Redis users' tests run against a single node and against a three-node cluster.
export OMEGA_REDIS_CLUSTER_PORT=${OMEGA_TEST_REDIS_CLUSTER_PORT:-16380}
export OMEGA_PG_PORT=${OMEGA_TEST_PG_PORT:-15432}
export OMEGA_API_PORT=${OMEGA_TEST_API_PORT:-18080}
export OMEGA_RECEIVER_PORT=${OMEGA_TEST_RECEIVER_PORT:-18090}

cleanup() {
  local rc=$?
  "$ROOT/deploy/local/stack.sh" down >/dev/null 2>&1 || true
  if [ $rc -ne 0 ] && [ -d "$OMEGA_DATA/log" ]; then
    echo "test stack logs kept in $OMEGA_DATA/log" >&2
  else
    rm -rf "$OMEGA_DATA"
  fi
  exit $rc
}
trap cleanup EXIT
"$ROOT/deploy/local/stack.sh" up
eval "$("$ROOT/deploy/local/stack.sh" env)"
export OMEGA_TEST_STACK=1
if [ $# -eq 0 ]; then set -- go test -count=1 ./...; fi
"$@"
