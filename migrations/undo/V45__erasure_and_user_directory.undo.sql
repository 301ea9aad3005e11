-- Reverts V45__erasure_and_user_directory.sql. The schema before it cannot hold an erased
-- user's tombstone (its personal data columns were NOT NULL), so tombstones go.
DROP TABLE consumer.reconcile_runs;
ALTER TABLE consumer.counters
    DROP COLUMN stale_versions_total,
    DROP COLUMN held_total,
    DROP COLUMN erased_skipped_total;
DROP TABLE consumer.held_events;
DROP TABLE consumer.user_directory;
DELETE FROM users.users WHERE erased_at IS NOT NULL;
ALTER TABLE users.users
    DROP CONSTRAINT users_erased_has_no_personal_data,
    DROP COLUMN erased_at,
    ALTER COLUMN email SET NOT NULL,
    ALTER COLUMN password_hash SET NOT NULL,
    ALTER COLUMN first_name SET NOT NULL,
    ALTER COLUMN last_name SET NOT NULL;
