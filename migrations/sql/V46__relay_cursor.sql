-- The relay's bookkeeping moves from three columns per outbox row (published_at, attempts,
-- last_error: an UPDATE, a new row version and its WAL per published event) to one row
-- for the whole outbox, written once per Kafka transaction.
--
-- Each outbox row records the transaction that wrote it (xact_id, a 64-bit xid8). The
-- relay publishes by visibility windows, as PgQ does: it takes a snapshot S, publishes
-- the rows whose transaction is visible in S but not in P, the snapshot of the previous
-- window, in id order, and then S becomes P. A transaction that commits after a later
-- one (out of id order) is simply in a later window, so no row is ever skipped.

ALTER TABLE users.outbox ADD COLUMN xact_id xid8;
-- Rows already published belong to "transaction 2" (frozen: visible in every snapshot);
-- rows not yet published to this migration's transaction, which the first window takes.
UPDATE users.outbox
    SET xact_id = CASE WHEN published_at IS NULL THEN pg_current_xact_id() ELSE '2'::xid8 END;
ALTER TABLE users.outbox
    ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN xact_id SET NOT NULL;
-- Finds the rows of transactions that committed late (their ids are below rows already
-- published: the id is checked in the index, without visiting the table), and the
-- backlog.
CREATE INDEX outbox_xact_id_idx ON users.outbox (xact_id, id);
DROP INDEX users.outbox_unpublished_idx;
DROP INDEX users.outbox_published_at_idx;
ALTER TABLE users.outbox
    DROP COLUMN published_at,
    DROP COLUMN attempts,
    DROP COLUMN last_error;

-- The relay's state: one row. Kafka acknowledged every outbox row whose transaction is
-- visible in `published` (except the parked ones), and, while a window is under way, the
-- rows of the window (visible in `window_snapshot`, not in `published`) up to
-- `window_after`. `high_water` is the highest id published: rows above it are new, rows
-- at or below it that are not yet published came from transactions that committed late.
-- Leadership is a lease on the same row: the leader renews `lease_until`; a standby takes
-- over once it has passed, raising `epoch`, and every write of the leader's is made only
-- while the epoch is still its own (a frozen or cut-off leader is fenced). All relays of
-- this outbox share one Kafka transactional id, so Kafka fences a stale leader's
-- producer as well.
CREATE TABLE users.outbox_relay (
    id                     boolean     PRIMARY KEY DEFAULT true CHECK (id),
    published              pg_snapshot NOT NULL,
    window_snapshot        pg_snapshot,
    window_after           bigint,
    high_water             bigint      NOT NULL DEFAULT 0,
    published_total        bigint      NOT NULL DEFAULT 0,
    replayed_total         bigint      NOT NULL DEFAULT 0,
    published_at           timestamptz,
    epoch                  bigint      NOT NULL DEFAULT 0,
    leader                 text,
    lease_until            timestamptz NOT NULL DEFAULT '-infinity',
    kafka_transactional_id text        NOT NULL
        DEFAULT 'outbox-relay-' || replace(gen_random_uuid()::text, '-', ''),
    CHECK ((window_snapshot IS NULL) = (window_after IS NULL))
);
-- Nothing is published yet: every transaction from 3 (the first normal one) on is unseen.
INSERT INTO users.outbox_relay (published, high_water)
    VALUES ('3:3:', 0);

-- Rows Kafka refused for good (too large, an unknown topic, ...), set apart so that the
-- rest flows; later rows of the same aggregate wait here behind them, in order. The
-- leader retries them now and then; retention never purges a parked row.
CREATE TABLE users.outbox_parked (
    outbox_id    bigint      PRIMARY KEY,
    aggregate_id text        NOT NULL,
    error        text        NOT NULL,
    attempts     integer     NOT NULL DEFAULT 1,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    tried_at     timestamptz NOT NULL DEFAULT now()
);

-- Replays: a request names published rows (up to `up_to`, published as of the state it
-- copies), the relay re-publishes them in id order and records its progress in `after`.
CREATE TABLE users.outbox_replays (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    since           timestamptz,
    until           timestamptz,
    event_type      text,
    aggregate_id    text,
    up_to           bigint      NOT NULL,
    published       pg_snapshot NOT NULL,
    window_snapshot pg_snapshot,
    window_after    bigint,
    rows            bigint      NOT NULL,
    after           bigint      NOT NULL DEFAULT 0,
    sent            bigint      NOT NULL DEFAULT 0,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX outbox_replays_pending_idx ON users.outbox_replays (id) WHERE finished_at IS NULL;

-- The relay reads the outbox and purges it, but never changes a row of it. Its `replay`
-- command asks for replays.
REVOKE UPDATE ON users.outbox FROM outbox_relay;
GRANT SELECT, UPDATE ON users.outbox_relay TO outbox_relay;
GRANT SELECT, INSERT, UPDATE, DELETE ON users.outbox_parked TO outbox_relay;
GRANT SELECT, INSERT, UPDATE ON users.outbox_replays TO outbox_relay;
GRANT USAGE ON SEQUENCE users.outbox_replays_id_seq TO outbox_relay;
-- user-service asks for replays (its admin API) and reads the state for its dashboard.
-- (It has every privilege on the users schema's tables already, by default privileges.)
