#!/usr/bin/env bash
# `make run`: the local stack, then the Omega Reach processes (receiver, worker, CEP, API) with the
# demo journeys (journey/demo) and rules (cep/demo): cart_add -> journey cart-reminder -> webhook to
# the local receiver; a cart not paid within 30 minutes -> the retargeting journey (push, SMS if the
# push is not opened within a day).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK=$ROOT/deploy/local/stack.sh
BIN=${OMEGA_BIN:-$ROOT/bin}
export OMEGA_DATA=${OMEGA_DATA:-/var/lib/omega}

"$STACK" up
eval "$("$STACK" env)"
"$BIN/omega" migrate
# A development key with every scope, kept in $OMEGA_DATA/dev-api-key (reused while it is live).
OMEGA_API_KEY=$("$BIN/omega" apikey create --name dev-local --scopes admin --save "$OMEGA_DATA/dev-api-key" --replace)
export OMEGA_API_KEY
"$BIN/omega" events types apply -f "$ROOT/event/demo"
"$BIN/omega" journeys apply -f "$ROOT/journey/demo"
"$BIN/omega" rules apply -f "$ROOT/cep/demo"
"$STACK" start-app receiver "${OMEGA_RECEIVER_ADDR##*:}" "$BIN/omega" receiver
# Prometheus /metrics of each process on its own port.
M=${OMEGA_METRICS_PORT:-9464}
OMEGA_METRICS_ADDR=127.0.0.1:$((M + 2)) "$STACK" start-app worker - "$BIN/omega" worker
# The CEP process runs a reach worker too: its starts are eager (OMEGA_CEP_EAGER_START=false: off).
OMEGA_CEP_EAGER_START=${OMEGA_CEP_EAGER_START:-true} OMEGA_METRICS_ADDR=127.0.0.1:$((M + 1)) "$STACK" start-app cep - "$BIN/omega" cep
OMEGA_METRICS_ADDR=127.0.0.1:$M "$STACK" start-app api "${OMEGA_API_ADDR##*:}" "$BIN/omega" api

# Return only when a reach can run end to end, within 60 s altogether: the worker and the CEP stage
# report ready on /readyz once Temporal serves their task queue (the worker: once matching lists
# its polls), the API once it serves.
deadline=$((SECONDS + 60))
for app in "worker $((M + 2))" "cep $((M + 1))" "api $M"; do
  read -r name port <<<"$app"
  until "$BIN/omega" probe "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    pid=$(cat "$OMEGA_DATA/run/app-$name.pid" 2>/dev/null || true)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "run: $name is not ready (http://127.0.0.1:$port/readyz); last lines of $OMEGA_DATA/log/app-$name.log:" >&2
      tail -n 20 "$OMEGA_DATA/log/app-$name.log" >&2 || true
      echo "run: the stack's logs are in $OMEGA_DATA/log (temporal.log for the Temporal server)" >&2
      exit 1
    fi
    sleep 0.2
  done
done

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ui=http://127.0.0.1:${OMEGA_UI_PORT:-8233}
cat <<MSG

Omega Reach is running (data and logs in $OMEGA_DATA; stop everything with: make down)
  API          http://$OMEGA_API_ADDR   (Connect, gRPC and gRPC-Web; JSON works with curl)
  API key      $OMEGA_API_KEY   (development, admin scope)
  Temporal UI  $ui
  Receiver     http://$OMEGA_RECEIVER_ADDR/deliveries   (log: $OMEGA_DATA/log/app-receiver.log)
  Metrics      http://127.0.0.1:$M/metrics (api), :$((M + 1)) (cep), :$((M + 2)) (worker)

Every call carries the key; set it in your shell first (or: eval "\$(deploy/local/stack.sh env)"):
  export OMEGA_API_KEY=$OMEGA_API_KEY

Send a demo event (alice adds an item to her cart):
  curl -s -X POST http://$OMEGA_API_ADDR/omega.v1.EventService/Ingest -H 'Content-Type: application/json' -H "Authorization: Bearer \$OMEGA_API_KEY" \\
    -d '{"events":[{"event_id":"demo-$(date +%s)","user_id":"alice","type":"cart_add","item_id":"sku-42","ts":"$now"}]}'

Then:
  the delivery   curl -s http://$OMEGA_RECEIVER_ADDR/deliveries
  alice's runs   $ui/namespaces/default/workflows?query=UserId%3D%22alice%22
  her reaches    $BIN/omega reaches list --user alice     (or: $BIN/omega reaches get REACH_ID)
(At most ${OMEGA_DAILY_CAP:-3} sends per user per day: a fourth demo event for alice is audited as suppressed.)

The retargeting journey (push, wait up to 24h for push_open, else SMS), started for bob at once:
  curl -s -X POST http://$OMEGA_API_ADDR/omega.v1.ReachService/Trigger -H 'Content-Type: application/json' -H "Authorization: Bearer \$OMEGA_API_KEY" \\
    -d '{"user_id":"bob","journey_id":"cart-retarget","idempotency_key":"demo-$(date +%s)","attrs":{"item_id":"sku-7"}}'
  bob opens the push (use the reach_id the receiver shows): the journey ends without the SMS
  curl -s -X POST http://$OMEGA_API_ADDR/omega.v1.EventService/Ingest -H 'Content-Type: application/json' -H "Authorization: Bearer \$OMEGA_API_KEY" \\
    -d '{"events":[{"event_id":"open-$(date +%s)","user_id":"bob","type":"push_open","ts":"$now","attrs":{"reach_id":"REACH_ID"}}]}'
  its steps, in words   $ui/namespaces/default/workflows?query=JourneyId%3D%22cart-retarget%22
  or stop it            $BIN/omega reaches cancel --user bob --journey cart-retarget --reason "demo"

Rules and journeys are data: $BIN/omega rules list | apply -f DIR [--draft] | activate ID VERSION | test -f cep/demo --events FILE.jsonl
                             $BIN/omega journeys list | get ID | apply -f DIR | activate ID VERSION | disable ID
So is the event catalogue:   $BIN/omega events types list | get NAME | apply -f DIR | activate NAME VERSION | disable NAME
Keys: $BIN/omega apikey create --name NAME --scopes ingest,trigger,read | list | revoke ID
(the demo also reaches everyone who favourited an item when its price drops, and whoever views
an item 3 times in 10 minutes without chatting)
MSG
