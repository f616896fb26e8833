#!/usr/bin/env bash
# Shows what an operator sees: starts the retargeting journey for a fresh user on the running
# `make run` stack, waits until the push went out and the run waits for push_open, and saves a
# screenshot of the run's page in the Temporal UI (headless Chromium from Debian, driven by
# puppeteer-core from npm, both installed when missing) to docs/img/reach-run.png (or $1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-$ROOT/docs/img/reach-run.png}
export OMEGA_DATA=${OMEGA_DATA:-/var/lib/omega}
eval "$("$ROOT/deploy/local/stack.sh" env)"
UI=http://127.0.0.1:${OMEGA_UI_PORT:-8233}
curl -sf "$UI" >/dev/null || { echo "screenshot: no Temporal UI at $UI: run make run first" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "screenshot: installing chromium from Debian packages" >&2
  apt-get install -y -q chromium >/dev/null
fi
export OMEGA_TOOLS=$ROOT/.tools
if [ ! -d "$OMEGA_TOOLS/node_modules/puppeteer-core" ]; then
  npm install --silent --no-audit --no-fund --prefix "$OMEGA_TOOLS" puppeteer-core@24
fi

user=carol-$(date +%s)
reach=$(curl -sf -X POST "http://$OMEGA_API_ADDR/omega.v1.ReachService/Trigger" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer ${OMEGA_API_KEY:?no development key: run make run first}" \
  -d "{\"user_id\":\"$user\",\"journey_id\":\"cart-retarget\",\"idempotency_key\":\"shot\",\"attrs\":{\"item_id\":\"sku-42\"}}" |
  sed -n 's/.*"reachId":"\([^"]*\)".*/\1/p')
[ -n "$reach" ] || { echo "screenshot: Trigger failed" >&2; exit 1; }
for _ in $(seq 1 50); do
  curl -sf "http://$OMEGA_RECEIVER_ADDR/deliveries" | grep -q "\"reach_id\":\"$reach\"" && break
  sleep 0.2
done
sleep 1
id=$(printf %s "$reach" | sed 's#/#%2F#g')
url="$UI/namespaces/default/workflows/$id"
mkdir -p "$(dirname "$OUT")"
timeout 120 node "$ROOT/deploy/local/screenshot.mjs" "$url" "$OUT" "push_open"
echo "screenshot of $url in $OUT"
