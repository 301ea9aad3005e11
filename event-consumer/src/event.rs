//! What a received record is to the consumer: an event it applies, an event type it does
//! not know (counted and skipped), or poison (dead-lettered).

use chrono::{DateTime, Utc};
use outbox_relay::envelope::{self, Record};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const USER_REGISTERED: &str = "UserRegistered";
pub const USER_PROFILE_UPDATED: &str = "UserProfileUpdated";
pub const USER_PASSWORD_CHANGED: &str = "UserPasswordChanged";
pub const USER_ROLE_CHANGED: &str = "UserRoleChanged";
pub const USER_DEACTIVATED: &str = "UserDeactivated";
pub const USER_REACTIVATED: &str = "UserReactivated";
pub const USER_ERASED: &str = "UserErased";
pub const USER_SNAPSHOT: &str = "UserSnapshot";

/// The data of `UserRegistered`, as the user service writes it. Unknown extra fields are
/// allowed so that the producer can add fields without poisoning the consumer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub role: String,
    pub registered_at: DateTime<Utc>,
    /// Absent from events written before versions existed: those were version 1.
    #[serde(default = "first_version")]
    pub version: i64,
}

fn first_version() -> i64 {
    1
}

/// What one user event does to the user's row in the read model. Stored as JSON while the
/// event is held for a gap, so it is (de)serialisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Registered {
        email: String,
        first_name: String,
        last_name: String,
        phone: Option<String>,
        role: String,
    },
    /// Only the fields that changed; `phone` is set (possibly to none) when `sets_phone`.
    Profile {
        first_name: Option<String>,
        last_name: Option<String>,
        sets_phone: bool,
        phone: Option<String>,
    },
    /// Moves the version only: the read model holds no secret.
    Password,
    Role {
        role: String,
    },
    Status {
        active: bool,
    },
    Erased,
    /// The whole state at `version`.
    Snapshot {
        email: Option<String>,
        first_name: Option<String>,
        last_name: Option<String>,
        phone: Option<String>,
        role: String,
        status: platform::wire::UserStatus,
    },
}

/// One versioned change of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub user_id: Uuid,
    pub version: i64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A registration: its welcome effect, and the user's first row in the read model.
    UserRegistered(UserRegistered),
    /// A later change of the user (or a snapshot of it).
    User(UserChange),
    /// An event of a user who has been erased since: its payload kept only the user id
    /// (and version). Skipped, never dead-lettered.
    Scrubbed { user_id: Uuid },
    /// A well-formed event of a type this consumer has no handler for.
    Unknown,
}

impl Kind {
    /// The read-model change this event makes, if any.
    pub fn user_change(&self) -> Option<UserChange> {
        match self {
            Kind::UserRegistered(data) => Some(UserChange {
                user_id: data.user_id,
                version: data.version,
                change: Change::Registered {
                    email: data.email.clone(),
                    first_name: data.first_name.clone(),
                    last_name: data.last_name.clone(),
                    phone: data.phone.clone(),
                    role: data.role.clone(),
                },
            }),
            Kind::User(change) => Some(change.clone()),
            Kind::Scrubbed { .. } | Kind::Unknown => None,
        }
    }
}

/// A decoded event that goes through the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub id: Uuid,
    pub event_type: String,
    /// The W3C trace context of the request that wrote the event, when it had one.
    pub traceparent: Option<String>,
    pub kind: Kind,
}

/// Why a record can never be applied; the text becomes the DLQ record's `error` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error(transparent)]
    Envelope(#[from] envelope::DecodeError),
    #[error("{event_type} data does not fit its schema: {reason}")]
    Data { event_type: String, reason: String },
    #[error("header {name} {problem}")]
    Header { name: String, problem: &'static str },
}

/// Classifies one record.
pub fn classify(record: &Record) -> Result<Inbound, Poison> {
    check_headers(record)?;
    let event = envelope::decode(record)?;
    let event_type = event.attributes.event_type;
    let kind = kind_of(&event_type, event.data, event.attributes.user_version)?;
    Ok(Inbound {
        id: event.attributes.id,
        event_type,
        traceparent: event.attributes.traceparent,
        kind,
    })
}

/// The data of one event type, parsed; unknown extra fields are allowed.
fn parse<T: serde::de::DeserializeOwned>(
    event_type: &str,
    data: serde_json::Value,
) -> Result<T, Poison> {
    serde_json::from_value(data).map_err(|e| Poison::Data {
        event_type: event_type.to_owned(),
        reason: e.to_string(),
    })
}

fn poison(event_type: &str, reason: impl Into<String>) -> Poison {
    Poison::Data {
        event_type: event_type.to_owned(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
struct Versioned {
    user_id: Uuid,
    version: i64,
}

#[derive(Deserialize)]
struct ProfileData {
    user_id: Uuid,
    version: i64,
    changed: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RoleData {
    user_id: Uuid,
    version: i64,
    role: String,
}

#[derive(Deserialize)]
struct SnapshotData {
    user_id: Uuid,
    version: i64,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    role: String,
    status: platform::wire::UserStatus,
}

#[derive(Deserialize)]
struct Scrubbed {
    user_id: Uuid,
    erased: bool,
}

const USER_EVENTS: [&str; 8] = [
    USER_REGISTERED,
    USER_PROFILE_UPDATED,
    USER_PASSWORD_CHANGED,
    USER_ROLE_CHANGED,
    USER_DEACTIVATED,
    USER_REACTIVATED,
    USER_ERASED,
    USER_SNAPSHOT,
];

fn kind_of(
    event_type: &str,
    data: serde_json::Value,
    header_version: Option<i64>,
) -> Result<Kind, Poison> {
    if !USER_EVENTS.contains(&event_type) {
        return Ok(Kind::Unknown);
    }
    if data.get("erased").is_some() {
        let scrubbed: Scrubbed = parse(event_type, data)?;
        if !scrubbed.erased {
            return Err(poison(event_type, "erased must be true when present"));
        }
        return Ok(Kind::Scrubbed {
            user_id: scrubbed.user_id,
        });
    }
    let kind = match event_type {
        USER_REGISTERED => {
            let data: UserRegistered = parse(event_type, data)?;
            let text = [&data.email, &data.first_name, &data.last_name, &data.role];
            check_text(event_type, &text, data.phone.as_deref())?;
            if data.email.is_empty() {
                return Err(poison(event_type, "empty email"));
            }
            Kind::UserRegistered(data)
        }
        USER_PROFILE_UPDATED => {
            let data: ProfileData = parse(event_type, data)?;
            let text_of = |field: &str| -> Result<Option<String>, Poison> {
                match data.changed.get(field) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
                    Some(_) => Err(poison(event_type, format!("changed.{field} is not text"))),
                }
            };
            let first_name = text_of("first_name")?;
            let last_name = text_of("last_name")?;
            let phone = text_of("phone")?;
            if data.changed.contains_key("first_name") && first_name.is_none()
                || data.changed.contains_key("last_name") && last_name.is_none()
            {
                return Err(poison(event_type, "a name cannot be removed"));
            }
            let names: Vec<&String> = first_name.iter().chain(last_name.iter()).collect();
            check_text(event_type, &names, phone.as_deref())?;
            change(
                data.user_id,
                data.version,
                Change::Profile {
                    first_name,
                    last_name,
                    sets_phone: data.changed.contains_key("phone"),
                    phone,
                },
            )
        }
        USER_ROLE_CHANGED => {
            let data: RoleData = parse(event_type, data)?;
            check_text(event_type, &[&data.role], None)?;
            change(data.user_id, data.version, Change::Role { role: data.role })
        }
        USER_SNAPSHOT => {
            let data: SnapshotData = parse(event_type, data)?;
            let present: Vec<&String> = [&data.email, &data.first_name, &data.last_name]
                .into_iter()
                .flatten()
                .chain([&data.role])
                .collect();
            check_text(event_type, &present, data.phone.as_deref())?;
            change(
                data.user_id,
                data.version,
                Change::Snapshot {
                    email: data.email,
                    first_name: data.first_name,
                    last_name: data.last_name,
                    phone: data.phone,
                    role: data.role,
                    status: data.status,
                },
            )
        }
        _ => {
            let data: Versioned = parse(event_type, data)?;
            let what = match event_type {
                USER_PASSWORD_CHANGED => Change::Password,
                USER_DEACTIVATED => Change::Status { active: false },
                USER_REACTIVATED => Change::Status { active: true },
                _ => Change::Erased,
            };
            change(data.user_id, data.version, what)
        }
    };
    let version = match &kind {
        Kind::UserRegistered(data) => data.version,
        Kind::User(change) => change.version,
        _ => return Ok(kind),
    };
    if version < 1 {
        return Err(poison(event_type, "version must be at least 1"));
    }
    if header_version.is_some_and(|header| header != version) {
        return Err(poison(
            event_type,
            "version differs from the ce_userversion header",
        ));
    }
    Ok(kind)
}

fn change(user_id: Uuid, version: i64, change: Change) -> Kind {
    Kind::User(UserChange {
        user_id,
        version,
        change,
    })
}

/// Every CloudEvents attribute (`ce_*`, extensions included), `content-type` and
/// `traceparent` must be UTF-8 text without NUL: the inbox stores some of them in PostgreSQL
/// text, which cannot hold NUL, so such a record would fail its batch forever. Other headers
/// are the producer's business and travel to the DLQ untouched.
fn check_headers(record: &Record) -> Result<(), Poison> {
    let textual = |name: &str| {
        name.starts_with("ce_")
            || name == envelope::H_CONTENT_TYPE
            || name == envelope::H_TRACEPARENT
    };
    for (name, value) in record.headers.iter().filter(|(name, _)| textual(name)) {
        let problem = match std::str::from_utf8(value) {
            Err(_) => "is not valid UTF-8",
            Ok(text) if text.contains('\0') => "contains a NUL character",
            Ok(_) => continue,
        };
        return Err(Poison::Header {
            name: name.clone(),
            problem,
        });
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL; such a record would fail its transaction forever, so it
/// is poison, not a transient failure.
fn check_text(event_type: &str, fields: &[&String], phone: Option<&str>) -> Result<(), Poison> {
    let has_nul =
        fields.iter().any(|f| f.contains('\0')) || phone.is_some_and(|p| p.contains('\0'));
    if has_nul {
        return Err(poison(event_type, "NUL character in a text field"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox_relay::envelope::{headers_from_json, Attributes};

    fn record(event_type: &str, data: serde_json::Value) -> Record {
        let attributes = Attributes {
            id: Uuid::now_v7(),
            source: "/user-service".into(),
            event_type: event_type.into(),
            time: Utc::now(),
            subject: None,
            traceparent: None,
            user_version: None,
        };
        Record {
            key: Some(b"k".to_vec()),
            value: Some(data.to_string().into_bytes()),
            headers: headers_from_json(&attributes.to_headers_json()),
        }
    }

    fn registered() -> serde_json::Value {
        serde_json::json!({
            "user_id": Uuid::now_v7(), "email": "a@example.com", "first_name": "A",
            "last_name": "B", "phone": null, "role": "user",
            "registered_at": "2026-01-02T03:04:05Z"
        })
    }

    #[test]
    fn user_registered_is_applied_and_other_types_are_unknown() {
        let inbound = classify(&record(USER_REGISTERED, registered())).unwrap();
        assert!(matches!(inbound.kind, Kind::UserRegistered(ref d) if d.email == "a@example.com"));
        let other = classify(&record("UserDeleted", serde_json::json!({}))).unwrap();
        assert_eq!(other.kind, Kind::Unknown);
    }

    #[test]
    fn data_that_does_not_fit_is_poison() {
        let mut data = registered();
        data["user_id"] = "not-a-uuid".into();
        let err = classify(&record(USER_REGISTERED, data)).unwrap_err();
        assert!(err.to_string().contains("UserRegistered data"), "{err}");

        let mut data = registered();
        data["first_name"] = "a\u{0}b".into();
        assert!(classify(&record(USER_REGISTERED, data)).is_err());
    }

    #[test]
    fn a_nul_or_invalid_utf8_in_an_attribute_header_is_poison() {
        let with = |name: &str, value: &[u8]| {
            let mut record = record(USER_REGISTERED, registered());
            record.headers.retain(|(k, _)| k != name);
            record.headers.push((name.to_owned(), value.to_vec()));
            classify(&record).map(|_| ()).map_err(|e| e.to_string())
        };
        let nul = with("ce_type", b"UserRegistered\0").unwrap_err();
        assert_eq!(nul, "header ce_type contains a NUL character");
        let utf8 = with("ce_userversion", b"\xff1").unwrap_err();
        assert_eq!(utf8, "header ce_userversion is not valid UTF-8");
        assert!(with("traceparent", b"00-\0").is_err());
        assert!(with("content-type", b"application/json\xc3").is_err());
        // A header outside the envelope is not the consumer's to judge.
        assert_eq!(with("x-binary", b"\0\xff"), Ok(()));
    }

    #[test]
    fn a_date_before_postgresql_s_range_still_decodes() {
        // The database refuses it, not the decoder: the engine's test of a permanent SQL
        // error relies on that.
        let mut data = registered();
        data["registered_at"] = "-5000-01-01T00:00:00Z".into();
        let inbound = classify(&record(USER_REGISTERED, data)).unwrap();
        assert!(matches!(inbound.kind, Kind::UserRegistered(_)));
    }
}
