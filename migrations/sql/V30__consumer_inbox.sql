-- The event consumer's inbox: one row per event id ever applied (or skipped as an unknown
-- type), written in the same transaction as the event's effect, so a redelivery finds its
-- id and changes nothing.
CREATE TABLE consumer.processed_events (
    event_id     uuid PRIMARY KEY,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    kafka_offset bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_processed_at_idx ON consumer.processed_events (processed_at);

-- The effect of UserRegistered: the queue a mail sender works from, one row per user.
CREATE TABLE consumer.welcome_notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid        NOT NULL,
    event_id   uuid        NOT NULL,
    email      text        NOT NULL,
    first_name text        NOT NULL,
    last_name  text        NOT NULL,
    status     text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    CONSTRAINT welcome_notifications_user_id_key UNIQUE (user_id)
);
CREATE INDEX welcome_notifications_pending_idx ON consumer.welcome_notifications (id)
    WHERE status = 'pending';

-- Registrations per day (UTC day of registered_at), a projection of UserRegistered.
CREATE TABLE consumer.registration_stats (
    day   date   PRIMARY KEY,
    count bigint NOT NULL DEFAULT 0
);

-- Counters that survive restarts, in ONE row: every batch updates it once, so concurrent
-- consumers serialise on it without deadlocking on row order.
CREATE TABLE consumer.counters (
    id                  boolean     PRIMARY KEY DEFAULT true CHECK (id),
    processed_total     bigint      NOT NULL DEFAULT 0,
    duplicates_total    bigint      NOT NULL DEFAULT 0,
    dead_lettered_total bigint      NOT NULL DEFAULT 0,
    unknown_type_total  bigint      NOT NULL DEFAULT 0,
    last_processed_at   timestamptz
);
INSERT INTO consumer.counters (id) VALUES (true);
