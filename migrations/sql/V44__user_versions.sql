-- user-service: each user's version, 1 at registration and +1 per change of any kind,
-- assigned in the transaction of the change (its row is locked first), so that the outbox's
-- order and the versions agree. Every user event carries it (data `version`, header
-- `ce_userversion`), so a consumer can apply a user's events in order and see a gap.
ALTER TABLE users.users ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
