# Local stand-in for apache/kafka (built by scripts/docker-images.sh when no image registry
# is reachable): the broker jars that scripts/kafka/pom.xml resolves, on Debian's JDK 17.
# Like the official image it is configured by KAFKA_* variables (KAFKA_FOO_BAR -> foo.bar),
# formats KRaft storage on first start (CLUSTER_ID or a generated one) and ships
# /opt/kafka/bin/kafka-topics.sh and kafka-broker-api-versions.sh.
FROM debian:bookworm-slim
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1000 appuser \
 && useradd --system --uid 1000 --gid appuser --home-dir /opt/kafka --shell /usr/sbin/nologin appuser \
 && mkdir -p /opt/kafka/bin /opt/kafka/config /var/lib/kafka/data \
 && chown -R appuser:appuser /opt/kafka/config /var/lib/kafka
COPY libs/ /opt/kafka/libs/
COPY log4j2.properties /opt/kafka/config/log4j2.properties
COPY kafka-run.sh kafka-tool.sh /opt/kafka/bin/
RUN ln -s kafka-tool.sh /opt/kafka/bin/kafka-topics.sh \
 && ln -s kafka-tool.sh /opt/kafka/bin/kafka-broker-api-versions.sh \
 && ln -s kafka-tool.sh /opt/kafka/bin/kafka-storage.sh
ENV PATH=/opt/kafka/bin:$PATH
USER appuser
VOLUME /var/lib/kafka/data
EXPOSE 9092 9093
ENTRYPOINT ["/opt/kafka/bin/kafka-run.sh"]
