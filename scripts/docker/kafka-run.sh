#!/bin/sh
# Writes server.properties from the KAFKA_* environment (KAFKA_FOO_BAR -> foo.bar;
# ___ -> '-', __ -> '_' as in the official image), formats KRaft storage on first start,
# then runs the broker in the foreground.
set -eu
props=/opt/kafka/config/server.properties
: >"$props"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_TOOL_HEAP) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr 'A-Z' 'a-z')
  printf '%s=%s\n' "$key" "$value" >>"$props"
done
grep -q '^log.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >>"$props"
logdir=$(sed -n 's/^log.dirs=//p' "$props" | cut -d, -f1)
if [ ! -f "$logdir/meta.properties" ]; then
  id=${CLUSTER_ID:-$(kafka-storage.sh random-uuid | tail -n 1)}
  if grep -q '^controller.quorum.voters=' "$props"; then
    kafka-storage.sh format -t "$id" -c "$props"
  else
    kafka-storage.sh format -t "$id" -c "$props" --standalone
  fi
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC -Djava.awt.headless=true ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
