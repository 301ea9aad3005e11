#!/bin/sh
# kafka-topics.sh, kafka-broker-api-versions.sh, kafka-storage.sh: the tool classes of the
# broker jars, chosen by the name this script is called by.
case "$(basename "$0")" in
  kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
  kafka-broker-api-versions.sh) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  kafka-storage.sh) class=kafka.tools.StorageTool ;;
  *) echo "unknown tool $0" >&2; exit 2 ;;
esac
exec java ${KAFKA_TOOL_HEAP:--Xmx256m} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' "$class" "$@"
