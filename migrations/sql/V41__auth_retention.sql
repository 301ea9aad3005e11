-- bff: idempotency keys are scoped per client (the address the rate limiter sees), so one
-- client can neither replay nor block another client's key.
ALTER TABLE auth.idempotency_keys ADD COLUMN client text NOT NULL DEFAULT '';
ALTER TABLE auth.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE auth.idempotency_keys ADD PRIMARY KEY (client, key);
ALTER TABLE auth.idempotency_keys ALTER COLUMN client DROP DEFAULT;

-- The retention purge looks for revoked sessions as well as expired ones.
CREATE INDEX sessions_revoked_idx ON auth.sessions (revoked_at) WHERE revoked_at IS NOT NULL;
