-- Reverts V47__outbox_text.sql: the relay of V46 reads the jsonb columns themselves.
ALTER TABLE users.outbox
    DROP COLUMN payload_text,
    DROP COLUMN headers_text;
