-- Reverts V44__user_versions.sql.
ALTER TABLE users.users DROP COLUMN version;
