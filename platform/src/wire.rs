//! The bodies of the internal APIs, defined once and shared by each server and its client
//! (the BFF): the user service's users, credential checks, figures and replay, and the
//! event consumer's figures and dead letters. The BFF shows several of them on its public
//! API unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorBody;

/// A user's role (the `users.users` check allows exactly these).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Serialize, Deserialize, clap::ValueEnum,
)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// From the database's text; anything unknown is the least privileged role.
    pub fn from_db(text: &str) -> Self {
        match text {
            "admin" => Self::Admin,
            _ => Self::User,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn first_version() -> i64 {
    1
}

/// A change of the signed-in user's profile: any subset of the fields, each checked as at
/// registration. `phone: null` removes the phone; a field left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct ProfileUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "poem_openapi::types::MaybeUndefined::is_undefined"
    )]
    pub phone: poem_openapi::types::MaybeUndefined<String>,
}

/// A password change: the current password, and the new one (the registration's rules).
#[derive(Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange { .. }")
    }
}

/// A user's status change (deactivate, reactivate): the user after it, and whether it
/// changed anything (a second deactivation changes nothing and writes no event).
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct StatusChange {
    pub user: User,
    pub changed: bool,
}

/// A user as other services see it: never any password field.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// 1 at registration, +1 per change; the profile's ETag (`"3"`), which `PATCH` takes
    /// as `If-Match`.
    #[serde(default = "first_version")]
    #[oai(default = "first_version")]
    pub version: i64,
}

/// Where a user stands: active, deactivated by an admin, or erased (a tombstone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Deactivated,
    Erased,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
            Self::Erased => "erased",
        }
    }

    /// From the database's text; anything unknown reads as erased (shows nothing).
    pub fn from_db(text: &str) -> Self {
        match text {
            "active" => Self::Active,
            "deactivated" => Self::Deactivated,
            _ => Self::Erased,
        }
    }
}

/// One user as the read model should hold it: user-service's side of `reconcile`. An
/// erased user has no email, names or phone.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: Uuid,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub version: i64,
    /// When the user last changed (newer changes may still be on their way to a consumer).
    pub updated_at: DateTime<Utc>,
}

/// A page of users in id order; `next_after` is the `after` of the next page (none at the
/// end).
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct DirectoryPage {
    pub users: Vec<DirectoryUser>,
    pub next_after: Option<Uuid>,
}

/// Users for whom user-service should write a `UserSnapshot` (at most 1000).
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub user_ids: Vec<Uuid>,
}

/// A `UserSnapshot` written: the user, the version it shows, and its event id.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct SnapshotWritten {
    pub user_id: Uuid,
    pub version: i64,
    pub event_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub written: Vec<SnapshotWritten>,
    /// Ids no user has.
    pub not_found: Vec<Uuid>,
}

/// The password that confirms an account's erasure.
#[derive(Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct AccountErasure {
    pub password: String,
}

impl std::fmt::Debug for AccountErasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountErasure { .. }")
    }
}

/// An erased user: the id and the version of its `UserErased`.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct Erasure {
    pub user_id: Uuid,
    pub version: i64,
}

/// What one `reconcile` run found.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct ReconcileSummary {
    pub started_at: DateTime<Utc>,
    pub seconds: f64,
    /// Users compared (user-service's users plus read-model rows it does not know).
    pub checked: i64,
    /// Users whose read-model row differs (or is missing) and is not merely behind.
    pub differ: i64,
    /// Users whose newer events are still in flight (changed within the grace period).
    pub behind: i64,
    /// Users a `UserSnapshot` was asked for (`--repair`).
    pub repaired: i64,
}

/// How a user's read-model row stands against user-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    /// Fields differ (or the read model is ahead) at no excuse of events in flight.
    Differs,
    /// user-service has the user; the read model has no row, and the user is not new.
    Missing,
    /// The read model has a row for an id user-service does not know.
    Unknown,
    /// Older than user-service's version, and the user changed within the grace period:
    /// its newer events are still in flight. Not counted as differing.
    Behind,
}

/// One user `reconcile` reports; names the fields that differ, never their values.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct DriftedUser {
    pub user_id: Uuid,
    pub drift: Drift,
    /// The fields that differ (`email`, `first_name`, `last_name`, `phone`, `role`,
    /// `status`, `version`).
    pub fields: Vec<String>,
    pub read_model_version: Option<i64>,
    pub user_service_version: Option<i64>,
}

/// What `reconcile` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// Ask user-service for a `UserSnapshot` of each differing user, wait for them to be
    /// applied and check again.
    #[serde(default)]
    #[oai(default)]
    pub repair: bool,
}

/// A `reconcile` run: the summary and the users that differ or are behind (at most 1000
/// listed). After a repair, `before` is the first check's summary.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub summary: ReconcileSummary,
    pub users: Vec<DriftedUser>,
    pub before: Option<ReconcileSummary>,
    /// After a repair: the users the first check found, that snapshots were asked for.
    #[serde(default)]
    pub repaired_users: Vec<DriftedUser>,
}

/// The consumer's read model of users.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct ReadModelStats {
    /// Rows of `consumer.user_directory` (erased tombstones included).
    pub users: i64,
    /// Events parked until the version before them arrives.
    pub held_events: i64,
    /// Age in seconds of the oldest parked event; null when none is parked.
    pub oldest_held_age_s: Option<f64>,
    /// The latest `reconcile` run, if any.
    pub last_reconcile: Option<ReconcileSummary>,
}

/// A registration as the client sends it.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct Registration {
    /// A bare address, `name@example.com`, at most 254 characters: no display name
    /// (`Ada <ada@example.com>`), comments, quoted local part, IP literal, spaces, control
    /// characters (CR/LF) or invisible characters. Stored with the domain lower-cased and
    /// the local part as typed; unique case-insensitively.
    pub email: String,
    /// 8 to 128 characters, any Unicode; very common passwords are refused.
    pub password: String,
    /// 1 to 100 characters (not bytes), any script; no control, format, bidi or
    /// zero-width characters.
    pub first_name: String,
    /// 1 to 100 characters (not bytes), any script; no control, format, bidi or
    /// zero-width characters.
    pub last_name: String,
    /// Optional. International form: `+`, the country code, then the number (spaces,
    /// dots, dashes and parentheses allowed; no extension), valid for that country's
    /// numbering plan, e.g. `+44 20 7946 0958`. Stored in E.164 (`+442079460958`);
    /// unique in that form.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl poem_openapi::types::Example for Registration {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            phone: Some("+12025550123".into()),
        }
    }
}

/// The answers of a registration (the user service's, which the BFF passes on).
#[derive(Debug, ApiResponse)]
pub enum RegisterResponse {
    /// The new user; its `UserRegistered` event was written in the same transaction.
    #[oai(status = 201)]
    Created(Json<User>),
    /// The email (case-insensitively) or the phone is taken (`details.field` says which),
    /// or (BFF) a request with the same `Idempotency-Key` is still running.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Invalid fields, all listed in `details` as `{field, message}`, or (BFF) an
    /// `Idempotency-Key` reused with another body.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}

/// An email and password to check.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl poem_openapi::types::Example for Credentials {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
        }
    }
}

/// The verdict of a credential check.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Verification {
    pub valid: bool,
    /// Only when valid.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Only when valid.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Only when valid: the caller decides what an inactive account may do.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

impl Verification {
    /// Wrong password or unknown email: nothing else is told.
    pub fn invalid() -> Self {
        Self {
            valid: false,
            user_id: None,
            role: None,
            is_active: None,
        }
    }
}

/// The user service's live figures: users and the outbox's health.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct UserStats {
    pub users_total: i64,
    /// Since midnight UTC.
    pub registered_today: i64,
    pub registered_last_24h: i64,
    /// Outbox rows Kafka has not acknowledged yet.
    pub outbox_backlog: i64,
    /// Age in seconds of the oldest unpublished row; null when there is none.
    pub oldest_unpublished_age_s: Option<f64>,
    pub last_published_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct WelcomeNotifications {
    /// Notifications not yet sent.
    pub pending: i64,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct DayCount {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub count: i64,
}

/// The event consumer's live figures.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct EventStats {
    pub processed_total: i64,
    pub duplicates_total: i64,
    pub dead_lettered_total: i64,
    pub unknown_type_total: i64,
    pub last_processed_at: Option<DateTime<Utc>>,
    pub welcome_notifications: WelcomeNotifications,
    /// The last 7 days, oldest first, days without registrations included with 0.
    pub registrations_per_day: Vec<DayCount>,
    /// The user read model (absent from a consumer older than it: the rest still shows).
    #[serde(default)]
    pub read_model: Option<ReadModelStats>,
}

/// Which published outbox rows to re-queue.
#[derive(Debug, Clone, Default, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct ReplayRequest {
    /// RFC 3339: only rows created at or after.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339: only rows created before.
    pub until: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// Replay every retained row; required when no other filter is given.
    pub all: Option<bool>,
    /// Count only; change nothing.
    pub dry_run: Option<bool>,
}

impl poem_openapi::types::Example for ReplayRequest {
    fn example() -> Self {
        Self {
            since: "2025-01-01T00:00:00Z".parse().ok(),
            event_type: Some("UserRegistered".into()),
            dry_run: Some(true),
            ..Self::default()
        }
    }
}

/// How many rows a replay re-queued.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
pub struct ReplayResult {
    /// Rows re-queued (or, with `dry_run`, that would be).
    pub count: i64,
    pub dry_run: bool,
}

// The event consumer's dead letters (`/dlq`), which the BFF's admin routes show as is.

/// One dead letter: where it is, what it was and why it failed.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct DeadLetter {
    /// `PARTITION-OFFSET` on the DLQ topic.
    pub id: String,
    /// The CloudEvents id (`ce_id`), when the record had one.
    pub event_id: Option<String>,
    /// The CloudEvents type (`ce_type`), when the record had one.
    pub event_type: Option<String>,
    /// The record's key (the user id), as text.
    pub key: Option<String>,
    /// Why it was dead-lettered.
    pub error: Option<String>,
    /// When it was dead-lettered (RFC 3339).
    pub failed_at: Option<String>,
    /// Where it was read: topic, partition and offset.
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    /// How many times this record had been redriven before it failed (0: never).
    pub redrive_count: u32,
    /// When this dead letter was redriven, if it was.
    pub redriven_at: Option<DateTime<Utc>>,
}

/// A dead letter with its headers and value.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct DeadLetterDetail {
    #[oai(flatten)]
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// Every header (values as UTF-8, invalid bytes replaced).
    pub headers: BTreeMap<String, String>,
    /// The value as UTF-8 (invalid bytes replaced); absent for an empty record.
    pub value: Option<String>,
}

/// Which dead letters a list or redrive looks at.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Object)]
pub struct DeadLetterFilter {
    /// Only those dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this event type (`ce_type`).
    pub event_type: Option<String>,
}

/// What a redrive takes: `all`, some `ids`, or a filter (at least one of them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Object)]
pub struct RedriveRequest {
    /// Every dead letter not redriven yet.
    #[oai(default)]
    #[serde(default)]
    pub all: bool,
    /// These dead letters (`PARTITION-OFFSET`).
    #[oai(default)]
    #[serde(default)]
    pub ids: Vec<String>,
    #[oai(flatten)]
    #[serde(flatten)]
    pub filter: DeadLetterFilter,
    /// Only say what would be redriven.
    #[oai(default)]
    #[serde(default)]
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct RedriveReport {
    pub dry_run: bool,
    /// Sent back to the topic (or, on a dry run, would be).
    pub redriven: Vec<DeadLetter>,
    /// Selected but redriven before, so left alone.
    pub already_redriven: Vec<String>,
    /// Sent but not acknowledged by Kafka, with why; a later redrive tries them again.
    pub failed: Vec<RedriveFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct RedriveFailure {
    pub id: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct DeadLetterList {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
}
