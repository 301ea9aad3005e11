-- shared: one database role per service, with grants on what it owns and nothing else.
-- Roles belong to the cluster, not the database: each is created once (another database
-- of the cluster may have made it already) and LOGIN without a password, so nobody can
-- log in as it until `migrate passwords` (or ALTER ROLE) gives it one. Default privileges
-- make the tables later migrations add (as the migrating role) reach the owner too.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['user_service', 'outbox_relay', 'event_consumer', 'bff'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- user-service: its users, and the outbox it writes in the same transaction (and
-- replays from).
GRANT USAGE ON SCHEMA users TO user_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA users TO user_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA users TO user_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA users
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO user_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA users GRANT USAGE, SELECT ON SEQUENCES TO user_service;

-- outbox-relay: the outbox only; it reads rows, marks them published and purges them.
GRANT USAGE ON SCHEMA users TO outbox_relay;
GRANT SELECT, UPDATE, DELETE ON users.outbox TO outbox_relay;

-- event-consumer: its inbox, effects and read model.
GRANT USAGE ON SCHEMA consumer TO event_consumer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA consumer TO event_consumer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA consumer TO event_consumer;
ALTER DEFAULT PRIVILEGES IN SCHEMA consumer
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO event_consumer;
ALTER DEFAULT PRIVILEGES IN SCHEMA consumer GRANT USAGE, SELECT ON SEQUENCES TO event_consumer;

-- bff: sessions, refresh tokens and idempotency keys.
GRANT USAGE ON SCHEMA auth TO bff;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA auth TO bff;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA auth TO bff;
ALTER DEFAULT PRIVILEGES IN SCHEMA auth GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bff;
ALTER DEFAULT PRIVILEGES IN SCHEMA auth GRANT USAGE, SELECT ON SEQUENCES TO bff;
