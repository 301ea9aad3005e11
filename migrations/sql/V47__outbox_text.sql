-- The relay publishes an outbox row's payload and headers as JSON text, and PostgreSQL
-- keeps jsonb as a parsed tree: printing it back as text each time a row was read was
-- most of what reading a page of the outbox cost (a 10,000-row page: about 30 ms of the
-- server's ~45). The text is now printed once, when the row is written (a few
-- microseconds), into two generated columns that the relay reads; an UPDATE of the payload
-- (as erasure makes) prints it again. `payload` and `headers` stay jsonb, as written.
--
-- Adding stored columns rewrites the table under an ACCESS EXCLUSIVE lock: writers of the
-- outbox wait for as long as the rewrite of the rows kept for retention takes.
ALTER TABLE users.outbox
    ADD COLUMN payload_text text GENERATED ALWAYS AS (payload::text) STORED,
    ADD COLUMN headers_text text GENERATED ALWAYS AS (headers::text) STORED;
