-- Reverts V43__dlq_redrives_and_audit.sql: the redrive records and the audit log go.
DROP TABLE auth.audit_log;
DROP TABLE consumer.dlq_redrives;
