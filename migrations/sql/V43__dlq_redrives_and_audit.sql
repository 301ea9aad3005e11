-- event-consumer: the dead letters already redriven, so a second redrive skips them. A
-- dead letter is named by where it sits on the DLQ topic.
CREATE TABLE consumer.dlq_redrives (
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    event_id      uuid,
    redriven_to   text        NOT NULL,
    redriven_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

-- bff: one record per admin action (who, what, with which parameters, when, and how it
-- ended). The actor is an admin's user id (never an email), or none for an operator's
-- command line (`via` = 'cli'). The bff role may add and read records but neither change
-- nor delete them; the other services' roles may only add them (their commands:
-- `set-role`, `replay`, `dlq redrive`).
CREATE TABLE auth.audit_log (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      uuid,
    via        text        NOT NULL DEFAULT 'api' CHECK (via IN ('api', 'cli')),
    action     text        NOT NULL,
    parameters jsonb       NOT NULL DEFAULT '{}',
    outcome    text        NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    detail     jsonb,
    CHECK (actor IS NOT NULL OR via = 'cli')
);
CREATE INDEX audit_log_at_idx ON auth.audit_log (at DESC, id DESC);
REVOKE UPDATE, DELETE, TRUNCATE ON auth.audit_log FROM bff;
GRANT USAGE ON SCHEMA auth TO user_service, outbox_relay, event_consumer;
GRANT INSERT ON auth.audit_log TO user_service, outbox_relay, event_consumer;
