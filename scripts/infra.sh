#!/usr/bin/env bash
# Real PostgreSQL and Apache Kafka for development and tests, without Docker.
#
#   scripts/infra.sh up | down            both
#   scripts/infra.sh pg-up | pg-down      PostgreSQL only
#   scripts/infra.sh kafka-up | kafka-down Kafka only
#   scripts/infra.sh status
#   scripts/infra.sh clean-test-dbs       drop the throw-away databases tests create
#   scripts/infra.sh kafka-libs           resolve the Kafka broker jars (.infra/kafka/libs)
#   scripts/infra.sh tls-up | tls-down    the TLS fixture (below)
#
# The TLS fixture, on other ports, for the tests of production-style connections: a test CA
# and a server certificate for localhost / 127.0.0.1 (openssl), a PostgreSQL that accepts
# TLS connections only (port DB_TLS_PORT, default 5433; `hostnossl ... reject`), and a
# Kafka broker whose client listener is SASL_SSL with SCRAM-SHA-512 only (localhost:9094;
# the user `outbox` is created at format time, its password generated into
# .infra/tls/kafka_password). Certificates, keys and passwords live in .infra/tls/.
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
TLS_DIR="$INFRA/tls"
PG_TLS_DIR="$INFRA/postgres-tls"
PG_TLS_PORT="${DB_TLS_PORT:-5433}"
KAFKA_TLS_DIR="$INFRA/kafka-tls"
KAFKA_TLS_PORT=9094          # SASL_SSL, for clients
KAFKA_TLS_INTERNAL_PORT=9095 # PLAINTEXT, the broker's own
KAFKA_TLS_CONTROLLER_PORT=9096
KAFKA_TLS_USER=outbox
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

# A new cluster in $2/data, made with the initdb in $1: superuser PG_USER with password
# PG_PASSWORD, scram-sha-256 over TCP (initdb's output in $2/initdb.log).
pg_initdb() {
  local bin=$1 dir=$2 pwfile="$2/.pw"
  printf '%s\n' "$PG_PASSWORD" >"$pwfile"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pwfile"
  pg_run "$bin/initdb" -D "$dir/data" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  rm -f "$pwfile"
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
    pg_initdb "$bin" "$PG_DIR"
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
    start_broker "$KAFKA_DIR" "$KAFKA_HEAP"
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

# Stops the process whose pid `pidfile` holds (TERM, then KILL after 30 s). Returns 1 when
# nothing of ours was running.
stop_pidfile() {
  local pidfile=$1 what=$2 pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    log "stopping $what (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  else
    rm -f "$pidfile"
    return 1
  fi
}

# Starts a broker on `dir/server.properties` in the background (pid in `dir/kafka.pid`).
start_broker() {
  local dir=$1 heap=$2
  # shellcheck disable=SC2086
  nohup java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
}

kafka_down() {
  stop_pidfile "$KAFKA_DIR/kafka.pid" Kafka || log "Kafka: nothing of ours is running"
}

# ---------------------------------------------------------------- TLS fixture

tls_certs() {
  [ -f "$TLS_DIR/.complete" ] && return
  command -v openssl >/dev/null || apt_install openssl
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  log "making a test CA and a server certificate for localhost / 127.0.0.1 in $TLS_DIR"
  local ca
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=outbox test $ca" \
      -keyout "$TLS_DIR/$ca.key" -out "$TLS_DIR/$ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
  done
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
  cat >"$TLS_DIR/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
  openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 365 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt" 2>/dev/null
  cat "$TLS_DIR/server.key" "$TLS_DIR/server.crt" >"$TLS_DIR/server-keystore.pem"
  openssl rand -hex 24 >"$TLS_DIR/kafka_password"
  chmod 600 "$TLS_DIR"/*.key "$TLS_DIR/server-keystore.pem" "$TLS_DIR/kafka_password"
  touch "$TLS_DIR/.complete"
}

pg_tls_up() {
  if port_open "$PG_TLS_PORT"; then
    log "TLS PostgreSQL already answers on $PG_TLS_PORT: using it"
    return
  fi
  local bin
  bin=$(pg_bindir)
  [ -n "$bin" ] || die "no PostgreSQL binaries: run scripts/infra.sh pg-up first"
  mkdir -p "$PG_TLS_DIR/run"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_TLS_DIR"
  if [ ! -f "$PG_TLS_DIR/data/PG_VERSION" ]; then
    log "initialising a TLS-only cluster in $PG_TLS_DIR/data"
    pg_initdb "$bin" "$PG_TLS_DIR"
    cp "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$PG_TLS_DIR/data/"
    chmod 600 "$PG_TLS_DIR/data/server.key"
    cat >>"$PG_TLS_DIR/data/postgresql.auto.conf" <<EOF
listen_addresses = '$PG_HOST'
port = $PG_TLS_PORT
unix_socket_directories = '$PG_TLS_DIR/run'
max_connections = 100
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    # TLS or nothing over TCP.
    cat >"$PG_TLS_DIR/data/pg_hba.conf" <<EOF
local     all all                trust
hostssl   all all 127.0.0.1/32   scram-sha-256
hostnossl all all 0.0.0.0/0      reject
EOF
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_TLS_DIR"
  fi
  log "starting the TLS-only PostgreSQL on $PG_HOST:$PG_TLS_PORT"
  pg_run "$bin/pg_ctl" -D "$PG_TLS_DIR/data" -l "$PG_TLS_DIR/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$PG_TLS_DIR/postgres.log" >&2; die "the TLS PostgreSQL did not start"; }
}

pg_tls_down() {
  local bin
  bin=$(pg_bindir)
  if [ -f "$PG_TLS_DIR/data/postmaster.pid" ] && [ -n "$bin" ]; then
    log "stopping the TLS PostgreSQL"
    pg_run "$bin/pg_ctl" -D "$PG_TLS_DIR/data" -m fast -w stop >/dev/null || true
  fi
}

kafka_tls_up() {
  if port_open "$KAFKA_TLS_PORT"; then
    log "SASL_SSL Kafka already answers on $KAFKA_TLS_PORT: using it"
    return
  fi
  kafka_libs
  mkdir -p "$KAFKA_TLS_DIR/data"
  cat >"$KAFKA_TLS_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_TLS_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_TLS_PORT,INTERNAL://127.0.0.1:$KAFKA_TLS_INTERNAL_PORT,CONTROLLER://127.0.0.1:$KAFKA_TLS_CONTROLLER_PORT
advertised.listeners=SASL_SSL://localhost:$KAFKA_TLS_PORT,INTERNAL://127.0.0.1:$KAFKA_TLS_INTERNAL_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/server-keystore.pem
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
num.network.threads=1
num.io.threads=2
log.dirs=$KAFKA_TLS_DIR/data
EOF
  if [ ! -f "$KAFKA_TLS_DIR/data/meta.properties" ]; then
    local cluster_id scram
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid | tail -n 1)
    scram="SCRAM-SHA-512=[name=\"$KAFKA_TLS_USER\",password=\"$(cat "$TLS_DIR/kafka_password")\"]"
    log "formatting the SASL_SSL broker's storage with the SCRAM user $KAFKA_TLS_USER"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_TLS_DIR/server.properties" \
      --add-scram "$scram" >"$KAFKA_TLS_DIR/format.log" 2>&1 \
      || { cat "$KAFKA_TLS_DIR/format.log" >&2; die "formatting the SASL_SSL broker failed"; }
  fi
  log "starting the SASL_SSL Kafka on localhost:$KAFKA_TLS_PORT"
  local start=$SECONDS
  start_broker "$KAFKA_TLS_DIR" "-Xmx256m -Xms128m"
  local waited=0
  until port_open "$KAFKA_TLS_PORT" && kafka_java org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_TLS_INTERNAL_PORT" --list >/dev/null 2>&1; do
    kill -0 "$(cat "$KAFKA_TLS_DIR/kafka.pid")" 2>/dev/null \
      || { tail -n 30 "$KAFKA_TLS_DIR/kafka.log" >&2; die "the SASL_SSL Kafka exited during start-up"; }
    waited=$((waited + 1))
    [ "$waited" -lt 120 ] || die "the SASL_SSL Kafka did not answer within 60 s"
    sleep 0.5
  done
  log "SASL_SSL Kafka ready after $((SECONDS - start)) s"
}

kafka_tls_down() {
  stop_pidfile "$KAFKA_TLS_DIR/kafka.pid" "the SASL_SSL Kafka" || true
}

# Creates (or changes the password of) a SCRAM-SHA-512 user on the SASL_SSL broker, through
# its internal plaintext listener: tests use it to fix credentials while a client retries.
kafka_tls_user() {
  local name=${1:?user name} password=${2:?password}
  kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_TLS_INTERNAL_PORT" \
    --alter --entity-type users --entity-name "$name" \
    --add-config "SCRAM-SHA-512=[password=$password]" >/dev/null
}

tls_up() { tls_certs; pg_tls_up; kafka_tls_up; }
tls_down() { kafka_tls_down; pg_tls_down; }


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
  down) tls_down; kafka_down; pg_down ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  topics) kafka_topics ;;
  kafka-libs) kafka_libs ;;
  status) status ;;
  clean-test-dbs) clean_test_dbs ;;
  tls-up) tls_up ;;
  tls-down) tls_down ;;
  tls-user) shift; kafka_tls_user "$@" ;;
  *) echo "usage: $0 up|down|pg-up|pg-down|kafka-up|kafka-down|topics|kafka-libs|status|clean-test-dbs|tls-up|tls-down" >&2; exit 2 ;;
esac
