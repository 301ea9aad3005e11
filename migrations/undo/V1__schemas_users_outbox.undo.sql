-- Reverts V1__schemas_users_outbox.sql: the users schema with users and the outbox, and
-- the (then empty) auth and consumer schemas. No CASCADE anywhere: if someone built on
-- these objects, the undo fails and changes nothing rather than dropping their work too.
DROP TRIGGER outbox_notify ON users.outbox;
DROP FUNCTION users.outbox_notify();
DROP TABLE users.outbox;
DROP TABLE users.users;
DROP SCHEMA consumer;
DROP SCHEMA auth;
DROP SCHEMA users;
