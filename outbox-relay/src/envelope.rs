//! The event envelope: CloudEvents 1.0 in Kafka binary mode.
//!
//! A record's key is the aggregate id, its value the event's data JSON, and the
//! CloudEvents attributes travel as `ce_*` headers. The outbox row stores exactly those
//! headers (plus `traceparent`), so the relay copies them without knowing CloudEvents; the
//! consumer decodes them back with [`decode`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE_JSON: &str = "application/json";

pub const H_SPECVERSION: &str = "ce_specversion";
pub const H_ID: &str = "ce_id";
pub const H_SOURCE: &str = "ce_source";
pub const H_TYPE: &str = "ce_type";
pub const H_TIME: &str = "ce_time";
pub const H_SUBJECT: &str = "ce_subject";
pub const H_CONTENT_TYPE: &str = "content-type";
pub const H_TRACEPARENT: &str = "traceparent";
/// The CloudEvents extension attribute with the user's version after the event (1 for
/// `UserRegistered`, then +1 per change).
pub const H_USER_VERSION: &str = "ce_userversion";

/// A Kafka record without Kafka: what the relay produces and the consumer receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// The CloudEvents attributes of one event, as written into the outbox row's `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    pub id: Uuid,
    pub source: String,
    pub event_type: String,
    pub time: DateTime<Utc>,
    pub subject: Option<String>,
    pub traceparent: Option<String>,
    /// The user's version after this event (`ce_userversion`), for events that have one.
    #[serde(default)]
    pub user_version: Option<i64>,
}

impl Attributes {
    /// The header map stored in `outbox.headers` and sent as Kafka headers, in order.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (H_SPECVERSION, SPEC_VERSION.to_owned()),
            (H_ID, self.id.to_string()),
            (H_SOURCE, self.source.clone()),
            (H_TYPE, self.event_type.clone()),
            (
                H_TIME,
                self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ];
        if let Some(subject) = &self.subject {
            headers.push((H_SUBJECT, subject.clone()));
        }
        if let Some(version) = self.user_version {
            headers.push((H_USER_VERSION, version.to_string()));
        }
        headers.push((H_CONTENT_TYPE, CONTENT_TYPE_JSON.to_owned()));
        if let Some(traceparent) = &self.traceparent {
            headers.push((H_TRACEPARENT, traceparent.clone()));
        }
        headers
    }

    pub fn to_headers_json(&self) -> serde_json::Value {
        let map = self
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// Turns the outbox row's `headers` JSON object back into record headers. Non-string
/// values are kept as their JSON text so nothing is dropped.
pub fn headers_from_json(headers: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    match headers {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let bytes = match v {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                (k.clone(), bytes)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A decoded event, as the consumer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: String,
    pub attributes: Attributes,
    pub data: serde_json::Value,
}

/// Why a record is not a valid event (a poison message for the consumer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("unsupported CloudEvents specversion {0:?}")]
    UnsupportedSpecVersion(String),
    #[error("unsupported content-type {0:?}")]
    UnsupportedContentType(String),
    #[error("ce_id is not a UUID: {0:?}")]
    BadId(String),
    #[error("ce_time is not RFC 3339: {0:?}")]
    BadTime(String),
    #[error("ce_userversion is not a positive integer: {0:?}")]
    BadUserVersion(String),
    #[error("record has no key")]
    MissingKey,
    #[error("record has no value")]
    MissingValue,
    #[error("value is not JSON: {0}")]
    BadJson(String),
}

fn text<'a>(record: &'a Record, name: &'static str) -> Result<&'a str, DecodeError> {
    let raw = record
        .header(name)
        .ok_or(DecodeError::MissingHeader(name))?;
    std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8(name))
}

/// Decodes a binary-mode CloudEvents record. The data's own schema is the handler's concern.
pub fn decode(record: &Record) -> Result<Event, DecodeError> {
    let spec = text(record, H_SPECVERSION)?;
    if spec != SPEC_VERSION {
        return Err(DecodeError::UnsupportedSpecVersion(spec.to_owned()));
    }
    let id = text(record, H_ID)?;
    let id = Uuid::parse_str(id).map_err(|_| DecodeError::BadId(id.to_owned()))?;
    let source = text(record, H_SOURCE)?.to_owned();
    let event_type = text(record, H_TYPE)?.to_owned();
    let time = text(record, H_TIME)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| DecodeError::BadTime(time.to_owned()))?
        .with_timezone(&Utc);
    let subject = record
        .header(H_SUBJECT)
        .map(|_| text(record, H_SUBJECT))
        .transpose()?;
    let traceparent = record
        .header(H_TRACEPARENT)
        .map(|_| text(record, H_TRACEPARENT))
        .transpose()?;
    let user_version = record
        .header(H_USER_VERSION)
        .map(|_| {
            let text = text(record, H_USER_VERSION)?;
            text.parse::<i64>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| DecodeError::BadUserVersion(text.to_owned()))
        })
        .transpose()?;
    let content_type = text(record, H_CONTENT_TYPE)?;
    if !content_type.starts_with(CONTENT_TYPE_JSON) {
        return Err(DecodeError::UnsupportedContentType(content_type.to_owned()));
    }
    let key = record.key.as_deref().ok_or(DecodeError::MissingKey)?;
    let key = String::from_utf8(key.to_vec()).map_err(|_| DecodeError::MissingKey)?;
    let value = record.value.as_deref().ok_or(DecodeError::MissingValue)?;
    let data = serde_json::from_slice(value).map_err(|e| DecodeError::BadJson(e.to_string()))?;
    Ok(Event {
        key,
        attributes: Attributes {
            id,
            source,
            event_type,
            time,
            subject: subject.map(str::to_owned),
            traceparent: traceparent.map(str::to_owned),
            user_version,
        },
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Attributes, Record) {
        let attributes = Attributes {
            id: Uuid::now_v7(),
            source: "/user-service".into(),
            event_type: "UserRegistered".into(),
            time: Utc::now(),
            subject: Some("0190c2c5-7d6e-7000-8000-000000000001".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            user_version: Some(3),
        };
        let record = Record {
            key: Some(b"0190c2c5-7d6e-7000-8000-000000000001".to_vec()),
            value: Some(br#"{"user_id":"x"}"#.to_vec()),
            headers: headers_from_json(&attributes.to_headers_json()),
        };
        (attributes, record)
    }

    #[test]
    fn headers_round_trip_through_the_outbox_json() {
        let (attributes, record) = sample();
        let event = decode(&record).unwrap();
        // RFC 3339 with microseconds keeps the time exactly (PostgreSQL's precision).
        assert_eq!(event.attributes.id, attributes.id);
        assert_eq!(event.attributes.event_type, "UserRegistered");
        assert_eq!(event.attributes.traceparent, attributes.traceparent);
        assert_eq!(event.data["user_id"], "x");
        assert_eq!(record.header(H_SPECVERSION), Some(&b"1.0"[..]));
        assert_eq!(
            record.header(H_CONTENT_TYPE),
            Some(&b"application/json"[..])
        );
    }

    #[test]
    fn poison_records_say_why() {
        let (_, mut record) = sample();
        record.headers.retain(|(k, _)| k != H_ID);
        assert_eq!(decode(&record), Err(DecodeError::MissingHeader(H_ID)));

        let (_, mut record) = sample();
        record.value = Some(b"{not json".to_vec());
        assert!(matches!(decode(&record), Err(DecodeError::BadJson(_))));

        let (_, mut record) = sample();
        for (k, v) in &mut record.headers {
            if k == H_SPECVERSION {
                *v = b"0.3".to_vec();
            }
        }
        assert_eq!(
            decode(&record),
            Err(DecodeError::UnsupportedSpecVersion("0.3".into()))
        );
    }

    #[test]
    fn the_user_version_travels_as_ce_userversion_and_must_be_a_positive_integer() {
        let (_, mut record) = sample();
        assert!(record
            .headers
            .iter()
            .any(|(k, v)| k == H_USER_VERSION && v == b"3"));
        assert_eq!(decode(&record).unwrap().attributes.user_version, Some(3));
        for bad in [&b"0"[..], b"-1", b"two", b"1.5"] {
            record.headers.retain(|(k, _)| k != H_USER_VERSION);
            record
                .headers
                .push((H_USER_VERSION.to_owned(), bad.to_vec()));
            let error = decode(&record).unwrap_err();
            assert!(matches!(error, DecodeError::BadUserVersion(_)), "{error}");
        }
        record.headers.retain(|(k, _)| k != H_USER_VERSION);
        assert_eq!(decode(&record).unwrap().attributes.user_version, None);
    }
}
