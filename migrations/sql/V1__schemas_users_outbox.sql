-- One schema per owning service.
CREATE SCHEMA IF NOT EXISTS users;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS consumer;

CREATE TABLE users.users (
    id            uuid PRIMARY KEY,
    email         text        NOT NULL,
    phone         text,
    password_hash text        NOT NULL,
    first_name    text        NOT NULL,
    last_name     text        NOT NULL,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_phone_key UNIQUE (phone)
);
-- Emails are unique case-insensitively; the name is what a conflict reports.
CREATE UNIQUE INDEX users_email_key ON users.users (lower(email));
CREATE INDEX users_created_at_idx ON users.users (created_at);

-- The transactional outbox: written in the same transaction as the business change,
-- moved to Kafka by the outbox relay.
CREATE TABLE users.outbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    topic          text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text
);
-- The relay's work queue: only unpublished rows, in id order.
CREATE INDEX outbox_unpublished_idx ON users.outbox (id) WHERE published_at IS NULL;
-- Retention and replay scan published rows by time.
CREATE INDEX outbox_published_at_idx ON users.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX outbox_aggregate_idx ON users.outbox (aggregate_id, id);

-- Wake the relay once per inserting statement (not per row): a bulk insert is one wake-up.
CREATE FUNCTION users.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON users.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION users.outbox_notify();
