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
    #[error("header {name} {problem}")]
    Header { name: String, problem: &'static str },
}

/// Classifies one record.
pub fn classify(record: &Record) -> Result<Inbound, Poison> {
    check_headers(record)?;
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
