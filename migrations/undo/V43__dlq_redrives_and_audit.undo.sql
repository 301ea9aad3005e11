-- Reverts V43__dlq_redrives_and_audit.sql: the redrive records and the audit log go.
DROP TABLE auth.audit_log;
REVOKE USAGE ON SCHEMA auth FROM user_service, outbox_relay, event_consumer;
DROP TABLE consumer.dlq_redrives;
