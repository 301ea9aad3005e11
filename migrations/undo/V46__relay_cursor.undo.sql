-- Reverts V46__relay_cursor.sql: back to the per-row bookkeeping. A row the relay's state
-- counts as published gets published_at (the state's last write); the rest, parked rows
-- included (with their error), are unpublished again. Pending replays are dropped.
ALTER TABLE users.outbox
    ADD COLUMN published_at timestamptz,
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error   text;
UPDATE users.outbox o
    SET published_at = coalesce(r.published_at, now())
    FROM users.outbox_relay r
    WHERE (pg_visible_in_snapshot(o.xact_id, r.published)
           OR (r.window_snapshot IS NOT NULL AND o.id <= r.window_after
               AND pg_visible_in_snapshot(o.xact_id, r.window_snapshot)))
      AND NOT EXISTS (SELECT 1 FROM users.outbox_parked p WHERE p.outbox_id = o.id);
UPDATE users.outbox o
    SET attempts = p.attempts, last_error = p.error
    FROM users.outbox_parked p
    WHERE p.outbox_id = o.id;
CREATE INDEX outbox_unpublished_idx ON users.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON users.outbox (published_at) WHERE published_at IS NOT NULL;
DROP INDEX users.outbox_xact_id_idx;
ALTER TABLE users.outbox DROP COLUMN xact_id;
DROP TABLE users.outbox_replays;
DROP TABLE users.outbox_parked;
DROP TABLE users.outbox_relay;
GRANT UPDATE ON users.outbox TO outbox_relay;
