-- user-service: erasure. An erased user's row stays as a tombstone (its id, version, role
-- and erased_at), without personal data: email, names, phone and the password hash go, so
-- the email can be registered again and the user's old events stay rejected.
ALTER TABLE users.users
    ALTER COLUMN email DROP NOT NULL,
    ALTER COLUMN password_hash DROP NOT NULL,
    ALTER COLUMN first_name DROP NOT NULL,
    ALTER COLUMN last_name DROP NOT NULL,
    ADD COLUMN erased_at timestamptz,
    ADD CONSTRAINT users_erased_has_no_personal_data CHECK (
        CASE WHEN erased_at IS NULL
            THEN email IS NOT NULL AND password_hash IS NOT NULL
                 AND first_name IS NOT NULL AND last_name IS NOT NULL
            ELSE email IS NULL AND password_hash IS NULL AND first_name IS NULL
                 AND last_name IS NULL AND phone IS NULL
        END
    );

-- The consumer's view of every user, built only from events (never from users.*).
CREATE TABLE consumer.user_directory (
    user_id    uuid PRIMARY KEY,
    email      text,
    first_name text,
    last_name  text,
    phone      text,
    role       text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('active', 'deactivated', 'erased')),
    version    bigint      NOT NULL CHECK (version >= 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events that came before the version they follow: parked here (not blocking their
-- partition) until the missing version arrives or a snapshot covers them.
CREATE TABLE consumer.held_events (
    user_id    uuid        NOT NULL,
    version    bigint      NOT NULL,
    event_id   uuid        NOT NULL,
    event_type text        NOT NULL,
    change     jsonb       NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, version)
);
CREATE INDEX held_events_held_at_idx ON consumer.held_events (held_at);

-- Version bookkeeping next to the other counters.
ALTER TABLE consumer.counters
    ADD COLUMN stale_versions_total bigint NOT NULL DEFAULT 0,
    ADD COLUMN held_total bigint NOT NULL DEFAULT 0,
    ADD COLUMN erased_skipped_total bigint NOT NULL DEFAULT 0;

-- What each reconcile run found (the admin dashboard shows the latest).
CREATE TABLE consumer.reconcile_runs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at timestamptz NOT NULL,
    seconds    float8      NOT NULL,
    checked    bigint      NOT NULL,
    differ     bigint      NOT NULL,
    behind     bigint      NOT NULL,
    repaired   bigint      NOT NULL DEFAULT 0
);
