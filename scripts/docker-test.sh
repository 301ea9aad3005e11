#!/usr/bin/env bash
# The container path, end to end: Docker engine up (or reused), stand-in base images where
# no registry is reachable (scripts/docker-images.sh), the services' image from binaries
# built on the host (docker/Dockerfile.prebuilt), `up -d`, every service healthy, then the
# scenario through the published BFF only, and `down -v` whatever happens.
#
#   scripts/docker-test.sh        (make docker-test)
#
# DOCKER_TEST_PORT  host port for the BFF, on 127.0.0.1 (default 18080)
# DOCKER_TEST_KEEP=1  leave the stack running afterwards (then: docker-compose -p
#                   outbox-docker-test -f docker/docker-compose.yml down -v)
# DOCKER_TEST_USERS registrations in flight while the relay is killed (default 30)
# DOCKER_TEST_BIN_DIR take the binaries from this folder instead of building them
set -euo pipefail
# The Makefile exports DB_* and KAFKA_BROKERS for the native stack; they are not the
# container stack's settings (compose would pass DB_PASSWORD=postgres on, which ENV=docker
# rightly refuses). The test stack generates its own secrets.
unset DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD KAFKA_BROKERS

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA="${INFRA_DIR:-$ROOT/.infra}"
PORT="${DOCKER_TEST_PORT:-18080}"
BASE="http://127.0.0.1:$PORT"
USERS="${DOCKER_TEST_USERS:-30}"
PROJECT=outbox-docker-test
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
START=$SECONDS
mkdir -p "$INFRA/docker"

log() { printf '[docker-test %3ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf '[docker-test %3ds] FAILED: %s\n' "$((SECONDS - START))" "$*" >&2; exit 1; }

apt_install() {
  log "installing $* from the OS packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ------------------------------------------------------------------ engine and tools
need=()
command -v dockerd >/dev/null || command -v docker >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

# Is a process with this exact name running? (no procps needed)
running() { grep -qsx "$1" /proc/[0-9]*/comm; }
# A pid file left by an engine that was killed names a pid the kernel may since have given
# to another process; dockerd then waits for "its" containerd until it times out. Remove
# pid files whose process is not the program they belong to.
drop_stale_pidfile() {
  local file=$1 prog=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$prog" ]; then
    log "removing stale $file (pid ${pid:-none} is not $prog)"
    rm -f "$file"
  fi
}

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || apt_install docker.io
  if running dockerd; then
    log "a dockerd is running but not answering yet; waiting for it"
  else
    drop_stale_pidfile /var/run/docker.pid dockerd
    drop_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
    log "starting dockerd (log: .infra/docker/dockerd.log)"
    nohup setsid dockerd >"$INFRA/docker/dockerd.log" 2>&1 </dev/null &
    echo $! >"$INFRA/docker/dockerd.pid"
  fi
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || {
    grep -v 'module=grpc' "$INFRA/docker/dockerd.log" | tail -n 20 >&2
    die "dockerd did not answer within 150 s"
  }
fi
log "Docker engine $(docker version -f '{{.Server.Version}}')"

if command -v docker-compose >/dev/null; then compose_bin=(docker-compose); else compose_bin=(docker compose); fi
export IMAGE_TAG=docker-test BFF_BIND=127.0.0.1 BFF_PORT="$PORT" SCRYPT_LOG_N="${SCRYPT_LOG_N:-12}"
compose() {
  "${compose_bin[@]}" -p "$PROJECT" -f "$ROOT/docker/docker-compose.yml" \
    -f "$ROOT/docker/docker-compose.test.yml" "$@"
}

# ------------------------------------------------------------------ images
"$ROOT/scripts/docker-images.sh"

BIN_DIR="${DOCKER_TEST_BIN_DIR:-}"
if [ -z "$BIN_DIR" ]; then
  log "building the service binaries on the host (a no-op after make test)"
  (cd "$ROOT" && cargo build -q --bins -p bff -p user-service -p outbox-relay -p event-consumer -p migrations)
  BIN_DIR="$TARGET_DIR/debug"
fi
ctx=$(mktemp -d "${TMPDIR:-/tmp}/docker-test-image.XXXXXX")
mkdir "$ctx/bin"
for bin in bff user-service outbox-relay event-consumer migrate; do
  cp "$BIN_DIR/$bin" "$ctx/bin/"
done
cp "$ROOT/docker/secrets-init.sh" "$ctx/"
DOCKER_BUILDKIT=0 docker build -q -t "outbox-platform:$IMAGE_TAG" -f "$ROOT/docker/Dockerfile.prebuilt" "$ctx" \
  2>&1 >/dev/null | grep -v -e DEPRECATED -e 'legacy builder' -e BuildKit -e 'environment-variable' -e '^ *$' >&2 || true
rm -rf "$ctx"
docker image inspect "outbox-platform:$IMAGE_TAG" >/dev/null || die "the services' image did not build"
log "image outbox-platform:$IMAGE_TAG ready"

# ------------------------------------------------------------------ stack
LONG_RUNNING=(postgres kafka user-service outbox-relay event-consumer bff)
ONE_SHOT=(secrets-init kafka-init migrate)
failed=0

finish() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    compose ps >&2
    for s in "${LONG_RUNNING[@]}" "${ONE_SHOT[@]}"; do
      local id health code
      id=$(compose ps -q "$s" 2>/dev/null)
      [ -n "$id" ] || continue
      health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
      code=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
      if [ "$health" != healthy ] && [ "$code" != "exited 0" ] || [ "$s" = "${FAILING:-}" ]; then
        echo "----- logs of $s ($code${health:+, $health}) -----" >&2
        compose logs --no-color --tail 60 "$s" >&2
      fi
    done
  fi
  if [ "${DOCKER_TEST_KEEP:-0}" = 1 ]; then
    log "stack left running (DOCKER_TEST_KEEP=1)"
  else
    compose down -v --remove-orphans >/dev/null 2>&1
    log "stack removed (down -v)"
  fi
  if [ "$rc" = 0 ]; then log "PASSED in $((SECONDS - START)) s"; else log "FAILED after $((SECONDS - START)) s"; fi
  exit "$rc"
}
trap finish EXIT

compose down -v --remove-orphans >/dev/null 2>&1 || true
log "compose up -d"
compose up -d 2>&1 | grep -v -e '^Creating\|^Starting' >&2 || true

service_state() { # prints healthy | exited:N | starting | ...
  local id
  id=$(compose ps -q "$1")
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{if eq .State.Status "exited"}}exited:{{.State.ExitCode}}{{else if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"
}

wait_healthy() {
  local deadline=$((SECONDS + ${1:-300})) s st pending
  while :; do
    pending=""
    for s in "${ONE_SHOT[@]}"; do
      st=$(service_state "$s")
      case "$st" in exited:0) ;; exited:*) FAILING=$s; die "$s failed ($st)" ;; *) pending+=" $s" ;; esac
    done
    for s in "${LONG_RUNNING[@]}"; do
      st=$(service_state "$s")
      [ "$st" = healthy ] || pending+=" $s($st)"
    done
    [ -z "$pending" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || die "not healthy in time:$pending"
    sleep 2
  done
}
wait_healthy 300
log "every service healthy"
compose ps

# ------------------------------------------------------------------ scenario (BFF only)
json() { python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

# req METHOD PATH [BODY] [TOKEN]: sets $code and $body
req() {
  local args=(-s -o "$INFRA/docker/body" -w '%{http_code}' -X "$1" "$BASE$2")
  [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' -d "$3")
  [ -n "${4:-}" ] && args+=(-H "Authorization: Bearer $4")
  code=$(curl "${args[@]}") || code=000
  body=$(cat "$INFRA/docker/body")
}
expect() { # expect CODE WHAT
  [ "$code" = "$1" ] || die "$2: expected $1, got $code: $body"
  log "ok: $2 ($code)"
}

RUN=$(date +%s)
PW="correct horse battery staple"
# user_body EMAIL N: phone numbers are unique too, and valid (+1 202 555 NNNN)
user_body() { printf '{"email":"%s","password":"%s","first_name":"Doc","last_name":"Ker","phone":"+1202555%04d"}' "$1" "$PW" "$2"; }
login_body() { printf '{"email":"%s","password":"%s"}' "$1" "$PW"; }
registered=0

U1="u1-$RUN@example.com"
req POST /api/v1/register "$(user_body "$U1" 1)"; expect 201 "register $U1"; registered=$((registered + 1))
req POST /api/v1/auth/login "$(login_body "$U1")"; expect 200 "login"
ACCESS1=$(json access_token <<<"$body"); REFRESH1=$(json refresh_token <<<"$body")
[ "$(json token_type <<<"$body")" = Bearer ] || die "token_type is not Bearer"
req GET /api/v1/protected/profile "" "$ACCESS1"; expect 200 "profile"
[ "$(json email <<<"$body")" = "$U1" ] || die "profile answers another user: $body"

# Forged tokens: the same claims signed with the repository's development key are refused;
# signed with the stack's own (generated) key they are accepted, so the forgery is sound.
DEV_KEY=$(sed -n 's/^token_secret_key: *"\{0,1\}\(k4\.secret\.[^"]*\)"\{0,1\}.*/\1/p' "$ROOT/bff/config/development.yaml")
[ -n "$DEV_KEY" ] || die "no development key in bff/config/development.yaml"
FORGED=$(python3 "$ROOT/scripts/docker/paseto-resign.py" "$DEV_KEY" "$ACCESS1")
req GET /api/v1/protected/profile "" "$FORGED"; expect 401 "token signed with the development key refused"
STACK_KEY=$(compose exec -T bff cat /run/secrets/token_secret_key)
[ "$STACK_KEY" != "$DEV_KEY" ] || die "the stack runs with the development key"
RESIGNED=$(python3 "$ROOT/scripts/docker/paseto-resign.py" "$STACK_KEY" "$ACCESS1")
req GET /api/v1/protected/profile "" "$RESIGNED"; expect 200 "control: the same claims signed with the stack's key accepted"

req POST /api/v1/auth/refresh "{\"refresh_token\":\"$REFRESH1\"}"; expect 200 "refresh"
ACCESS2=$(json access_token <<<"$body"); REFRESH2=$(json refresh_token <<<"$body")
req POST /api/v1/auth/logout "" "$ACCESS2"; expect 204 "logout"
req POST /api/v1/auth/refresh "{\"refresh_token\":\"$REFRESH1\"}"; expect 401 "old refresh token refused"
req POST /api/v1/auth/refresh "{\"refresh_token\":\"$REFRESH2\"}"; expect 401 "refresh token of the logged-out session refused"

# Each service is connected as its own database role, none as the superuser.
DBQ="SELECT coalesce(string_agg(DISTINCT usename::text, ',' ORDER BY usename::text), '') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
db_users=$(compose exec -T postgres sh -c "psql -U \"\$POSTGRES_USER\" -d \"\$POSTGRES_DB\" -tAc \"$DBQ\"" | tr -d '\r')
[ "$db_users" = "bff,event_consumer,outbox_relay,user_service" ] \
  || die "the services' database users are '$db_users', not their four roles alone"
log "ok: database sessions by role: $db_users (none as the superuser)"

# An admin: promoted on the command line, as the README says.
ADMIN="admin-$RUN@example.com"
req POST /api/v1/register "$(user_body "$ADMIN" 2)"; expect 201 "register $ADMIN"; registered=$((registered + 1))
compose exec -T user-service user-service set-role --email "$ADMIN" --role admin >&2
others=1 # events that are not registrations: the UserRoleChanged just written
req POST /api/v1/auth/login "$(login_body "$ADMIN")"; expect 200 "admin login"
ADMIN_TOKEN=$(json access_token <<<"$body")

# wait_applied N: the dashboard shows N users, N welcome notifications, and N + $others
# processed events (each registration, and the other events written so far)
wait_applied() {
  local n=$1 deadline=$((SECONDS + ${2:-90})) users processed welcome backlog
  while :; do
    req GET /api/v1/protected/admin/dashboard "" "$ADMIN_TOKEN"
    if [ "$code" = 200 ]; then
      users=$(json users.users_total <<<"$body"); backlog=$(json users.outbox_backlog <<<"$body")
      processed=$(json events.processed_total <<<"$body"); welcome=$(json events.welcome_notifications.total <<<"$body")
      if [ "$users" = "$n" ] && [ "$processed" = "$((n + others))" ] && [ "$welcome" = "$n" ] && [ "$backlog" = 0 ]; then
        log "ok: dashboard: users_total=$users processed_total=$processed welcome_notifications.total=$welcome duplicates_total=$(json events.duplicates_total <<<"$body") outbox_backlog=$backlog"
        return 0
      fi
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "dashboard never showed $n applied events: $code $body"
    sleep 1
  done
}
wait_applied "$registered"

# The relay crashes while registrations are in flight. (`docker kill` would do, but Docker
# 20.10 counts any `docker kill` as a manual stop and skips the restart policy: tried with
# SIGKILL and SIGQUIT under `unless-stopped`, `always` and `on-failure`, RestartCount stays
# 0. So the relay's process is killed the way a crash or the OOM killer kills it: SIGKILL
# from outside Docker.)
RELAY=$(compose ps -q outbox-relay)
restarts_before=$(docker inspect -f '{{.RestartCount}}' "$RELAY")
(
  ok=0
  for i in $(seq 1 "$USERS"); do
    c=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/v1/register" \
      -H 'Content-Type: application/json' -d "$(user_body "load$i-$RUN@example.com" $((100 + i)))") || c=000
    [ "$c" = 201 ] && ok=$((ok + 1))
  done
  echo "$ok" >"$INFRA/docker/registered"
) &
loader=$!
sleep 1
pid=$(docker inspect -f '{{.State.Pid}}' "$RELAY")
child=$(tr ' ' '\n' <"/proc/$pid/task/$pid/children" | head -n 1)
[ -n "$child" ] || die "no relay process under the container's init (pid $pid)"
kill -9 "$child"
log "killed the relay (SIGKILL) with registrations in flight"
wait "$loader"
ok=$(cat "$INFRA/docker/registered")
[ "$ok" = "$USERS" ] || die "only $ok of $USERS registrations answered 201"
registered=$((registered + ok))
log "ok: $ok registrations during the crash"
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.RestartCount}}' "$RELAY")" -gt "$restarts_before" ] \
    && [ "$(service_state outbox-relay)" = healthy ] && break
  sleep 1
done
[ "$(service_state outbox-relay)" = healthy ] || { FAILING=outbox-relay; die "the relay did not come back healthy"; }
log "ok: the relay restarted (restart policy) and is healthy"
wait_applied "$registered" 120
log "ok: every one of the $registered registrations applied exactly once"
