//! What a received record is to the consumer: an event it applies, an event type it does
//! not know (counted and skipped), or poison (dead-lettered).

use chrono::{DateTime, Utc};
use outbox_relay::envelope::{self, Record};
use serde::Deserialize;
use uuid::Uuid;

/// The event type this consumer applies.
pub const USER_REGISTERED: &str = "UserRegistered";

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    UserRegistered(UserRegistered),
    /// A well-formed event of a type this consumer has no handler for.
    Unknown,
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
}

/// Classifies one record.
pub fn classify(record: &Record) -> Result<Inbound, Poison> {
    let event = envelope::decode(record)?;
    let event_type = event.attributes.event_type;
    let kind = match event_type.as_str() {
        USER_REGISTERED => {
            let data: UserRegistered =
                serde_json::from_value(event.data).map_err(|e| Poison::Data {
                    event_type: event_type.clone(),
                    reason: e.to_string(),
                })?;
            check_text(&event_type, &data)?;
            Kind::UserRegistered(data)
        }
        _ => Kind::Unknown,
    };
    Ok(Inbound {
        id: event.attributes.id,
        event_type,
        traceparent: event.attributes.traceparent,
        kind,
    })
}

/// PostgreSQL text cannot hold NUL; such a record would fail its transaction forever, so it
/// is poison, not a transient failure.
fn check_text(event_type: &str, data: &UserRegistered) -> Result<(), Poison> {
    let fields = [&data.email, &data.first_name, &data.last_name, &data.role];
    let has_nul = fields.iter().any(|f| f.contains('\0'))
        || data.phone.as_deref().is_some_and(|p| p.contains('\0'));
    if has_nul || data.email.is_empty() {
        return Err(Poison::Data {
            event_type: event_type.to_owned(),
            reason: "empty email or NUL character in a text field".into(),
        });
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
}
