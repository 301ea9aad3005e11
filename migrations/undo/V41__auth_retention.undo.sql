-- Reverts V41__auth_retention.sql. Where two clients used one key, one row is kept.
DROP INDEX auth.sessions_revoked_idx;
DELETE FROM auth.idempotency_keys a USING auth.idempotency_keys b
 WHERE a.key = b.key AND a.client > b.client;
ALTER TABLE auth.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE auth.idempotency_keys DROP COLUMN client;
ALTER TABLE auth.idempotency_keys ADD PRIMARY KEY (key);
