#!/usr/bin/env bash
# Runs the four services in the foreground with per-service prefixed logs.
# Ctrl-C (or SIGTERM) stops every one of them; if one exits, the others are stopped too.
set -uo pipefail
cd "$(dirname "$0")/.."

cargo build -q --bins -p bff -p user-service -p outbox-relay -p event-consumer || exit 1
bin=${CARGO_TARGET_DIR:-target}/debug
export LOG_FORMAT=${LOG_FORMAT:-pretty}

pids=()
start() {
  local name=$1 color=$2
  shift 2
  # Each service's output, line by line, behind a coloured name.
  ( "$@" 2>&1 | sed -u "s/^/$(printf '\033[%sm%-15s\033[0m|' "$color" "$name") /" ) &
  pids+=($!)
}

stop() {
  trap - INT TERM
  echo "stopping all services..."
  pkill -TERM -f "$bin/(bff|user-service|outbox-relay|event-consumer)( |$)" 2>/dev/null
  wait
  exit 0
}
trap stop INT TERM

start user-service 32 "$bin/user-service"
start outbox-relay 33 "$bin/outbox-relay"
start event-consumer 35 "$bin/event-consumer"
start bff 36 "$bin/bff"

echo "bff on http://127.0.0.1:8080 (docs: /docs) - Ctrl-C stops everything"
wait -n
echo "a service stopped; stopping the others"
stop
