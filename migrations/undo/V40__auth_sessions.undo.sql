-- Reverts V40__auth_sessions.sql. The auth schema itself belongs to V1.
DROP TABLE auth.idempotency_keys;
DROP TABLE auth.refresh_tokens;
DROP TABLE auth.sessions;
