# Local stand-in for the official postgres image (built by scripts/docker-images.sh when no
# image registry is reachable): Debian bookworm's PostgreSQL 15, with the official image's
# interface as far as the compose file uses it: POSTGRES_DB, POSTGRES_USER,
# POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE, pg_isready, data in /var/lib/postgresql/data.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
