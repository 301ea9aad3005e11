#!/usr/bin/env bash
# Real PostgreSQL and Apache Kafka for development and tests, without Docker.
#
#   scripts/infra.sh up | down            both
#   scripts/infra.sh pg-up | pg-down      PostgreSQL only
#   scripts/infra.sh kafka-up | kafka-down Kafka only
#   scripts/infra.sh status
#   scripts/infra.sh clean-test-dbs       drop the throw-away databases tests create
#
# Each component: use what already answers on its port, else start what is installed,
# else install it (PostgreSQL from the OS packages, Kafka's jars from Maven Central).
# Everything this script creates lives under .infra/ (git-ignored); `down` stops only
# what this script started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA="${INFRA_DIR:-$ROOT/.infra}"
PG_HOST=127.0.0.1
PG_PORT="${DB_PORT:-5432}"
PG_DB="${DB_NAME:-event_driven_db}"
PG_USER="${DB_USER:-postgres}"
PG_PASSWORD="${DB_PASSWORD:-postgres}"
PG_DIR="$INFRA/postgres"
KAFKA_DIR="$INFRA/kafka"
KAFKA_PORT=9092
KAFKA_HEAP="${KAFKA_HEAP:--Xmx512m -Xms256m}"
TOPIC="user-events"
DLQ_TOPIC="user-events.dlq"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"; fi
}

apt_install() {
  command -v apt-get >/dev/null || die "no apt-get: install $* yourself"
  log "installing $* from the OS packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done | sort -V | tail -n 1
}

# Runs a PostgreSQL server binary as the unprivileged owner of the data (initdb and
# postgres refuse to run as root).
pg_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_admin() {
  PGPASSWORD="$PG_PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
    -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_ensure_database() {
  if ! psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
    # A server we did not start (the OS cluster, say) that does not know our password:
    # as root we can set it through the local socket.
    if [ "$(id -u)" = 0 ] && [ -S /var/run/postgresql/.s.PGSQL.$PG_PORT ]; then
      log "setting the password of role $PG_USER on the running server"
      runuser -u postgres -- psql -p "$PG_PORT" -qc "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
    fi
    psql_admin -c 'SELECT 1' >/dev/null || die "PostgreSQL on $PG_PORT refuses $PG_USER/$PG_PASSWORD (set DB_USER/DB_PASSWORD)"
  fi
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE $PG_DB" >/dev/null
  fi
}

pg_up() {
  if port_open "$PG_PORT"; then
    log "PostgreSQL already answers on $PG_PORT: using it"
    pg_ensure_database
    return
  fi
  local bin
  bin=$(pg_bindir)
  if [ -z "$bin" ]; then
    apt_install postgresql postgresql-client
    # The package may start its own cluster on 5432; we run ours under .infra/ instead.
    if command -v pg_lsclusters >/dev/null; then
      pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
        as_root pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
      done
    fi
    bin=$(pg_bindir)
    [ -n "$bin" ] || die "PostgreSQL binaries not found after install"
  fi
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "initialising a cluster in $PG_DIR/data ($("$bin/postgres" --version))"
    local pwfile="$PG_DIR/.pw"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$pwfile"
    pg_run "$bin/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log"
    rm -f "$pwfile"
    mkdir -p "$PG_DIR/run"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR/run"
    cat >>"$PG_DIR/data/postgresql.auto.conf" <<EOF
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 400
shared_buffers = 256MB
synchronous_commit = on
EOF
  fi
  log "starting PostgreSQL on $PG_HOST:$PG_PORT"
  pg_run "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
  touch "$PG_DIR/started-by-infra"
  pg_ensure_database
}

pg_down() {
  local bin
  bin=$(pg_bindir)
  if [ -f "$PG_DIR/data/postmaster.pid" ] && [ -n "$bin" ]; then
    log "stopping PostgreSQL"
    pg_run "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
  else
    log "PostgreSQL: nothing of ours is running"
  fi
  rm -f "$PG_DIR/started-by-infra"
}

# ---------------------------------------------------------------- Kafka

kafka_libs() {
  local libs="$KAFKA_DIR/libs"
  if [ -f "$libs/.complete" ] && cmp -s "$ROOT/scripts/kafka/pom.xml" "$libs/.complete"; then
    return
  fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving the Kafka broker jars from Maven Central"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  cp "$ROOT/scripts/kafka/pom.xml" "$libs/.complete"
  log "resolved $(ls "$libs"/*.jar | wc -l) jars ($(du -sh "$libs" | cut -f1))"
}

kafka_java() {
  java -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$KAFKA_DIR/libs/*" "$@"
}

kafka_ready() {
  # The broker answers metadata requests once it has joined its own quorum.
  if command -v kcat >/dev/null; then
    kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 >/dev/null 2>&1
  else
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --list >/dev/null 2>&1
  fi
}

create_topic() {
  local name=$1 partitions=$2
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 \
    >/dev/null
}

topic_exists() {
  command -v kcat >/dev/null && kcat -b "127.0.0.1:$KAFKA_PORT" -L -t "$1" -m 2 2>/dev/null | grep -q "topic \"$1\" with"
}

kafka_topics() {
  if topic_exists "$TOPIC" && topic_exists "$DLQ_TOPIC"; then
    log "topics $TOPIC and $DLQ_TOPIC are there"
    return
  fi
  kafka_libs
  create_topic "$TOPIC" 3
  create_topic "$DLQ_TOPIC" 1
  log "topics $TOPIC (3 partitions) and $DLQ_TOPIC are there"
}

kafka_up() {
  if port_open "$KAFKA_PORT"; then
    log "Kafka already answers on $KAFKA_PORT: using it"
  else
    kafka_libs
    mkdir -p "$KAFKA_DIR/data"
    { cat "$ROOT/scripts/kafka/server.properties"; echo "log.dirs=$KAFKA_DIR/data"; } \
      >"$KAFKA_DIR/server.properties"
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      local cluster_id
      cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid | tail -n 1)
      log "formatting KRaft storage (cluster $cluster_id)"
      kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" \
        --standalone >/dev/null 2>&1 \
        || kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null
    fi
    log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
    local start=$SECONDS
    # shellcheck disable=SC2086
    nohup java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
      -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      >"$KAFKA_DIR/kafka.log" 2>&1 &
    echo $! >"$KAFKA_DIR/kafka.pid"
  fi
  local waited=0
  until kafka_ready; do
    if [ -f "$KAFKA_DIR/kafka.pid" ] && ! kill -0 "$(cat "$KAFKA_DIR/kafka.pid")" 2>/dev/null \
      && ! port_open "$KAFKA_PORT"; then
      tail -n 30 "$KAFKA_DIR/kafka.log" >&2
      die "Kafka exited during start-up (log: $KAFKA_DIR/kafka.log)"
    fi
    waited=$((waited + 1))
    [ "$waited" -lt 120 ] || die "Kafka did not answer within 60 s (log: $KAFKA_DIR/kafka.log)"
    sleep 0.5
  done
  [ -n "${start:-}" ] && log "Kafka ready after $((SECONDS - start)) s"
  kafka_topics
}

kafka_down() {
  if [ -f "$KAFKA_DIR/kafka.pid" ] && kill -0 "$(cat "$KAFKA_DIR/kafka.pid")" 2>/dev/null; then
    local pid
    pid=$(cat "$KAFKA_DIR/kafka.pid")
    log "stopping Kafka (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  else
    log "Kafka: nothing of ours is running"
  fi
  rm -f "$KAFKA_DIR/kafka.pid"
}

# ---------------------------------------------------------------- misc

status() {
  if port_open "$PG_PORT"; then echo "postgres: up on $PG_HOST:$PG_PORT"; else echo "postgres: down"; fi
  if port_open "$KAFKA_PORT"; then echo "kafka:    up on 127.0.0.1:$KAFKA_PORT"; else echo "kafka:    down"; fi
}

clean_test_dbs() {
  local dbs
  dbs=$(psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'") || return 0
  for db in $dbs; do psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
  [ -z "$dbs" ] || log "dropped $(echo "$dbs" | wc -l) test databases"
}

case "${1:-}" in
  up) pg_up; kafka_up ;;
  down) kafka_down; pg_down ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  topics) kafka_topics ;;
  status) status ;;
  clean-test-dbs) clean_test_dbs ;;
  *) echo "usage: $0 up|down|pg-up|pg-down|kafka-up|kafka-down|topics|status|clean-test-dbs" >&2; exit 2 ;;
esac
