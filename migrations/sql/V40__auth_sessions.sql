-- bff: sessions (refresh-token families), their refresh tokens, and idempotency keys.

-- One row per login. A session ends at expires_at (absolute: rotation never extends it)
-- or when revoked (logout, or reuse of an already-used refresh token).
CREATE TABLE auth.sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid        NOT NULL,
    role           text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_user_idx ON auth.sessions (user_id);
CREATE INDEX sessions_expires_idx ON auth.sessions (expires_at);

-- Every refresh token issued in a session, by its jti. A token is good once: refreshing
-- sets used_at; presenting a used one revokes the session.
CREATE TABLE auth.refresh_tokens (
    jti        uuid PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON auth.refresh_tokens (session_id);

-- Idempotency-Key on POST /api/v1/register: the first answer, replayed for 24 h.
-- request_hash is an HMAC of the body (which holds a password), never the body itself.
CREATE TABLE auth.idempotency_keys (
    key             text        PRIMARY KEY,
    request_hash    bytea       NOT NULL,
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_idx ON auth.idempotency_keys (created_at);
