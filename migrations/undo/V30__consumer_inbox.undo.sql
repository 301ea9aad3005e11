-- Reverts V30__consumer_inbox.sql. The consumer schema itself belongs to V1.
DROP TABLE consumer.counters;
DROP TABLE consumer.registration_stats;
DROP TABLE consumer.welcome_notifications;
DROP TABLE consumer.processed_events;
