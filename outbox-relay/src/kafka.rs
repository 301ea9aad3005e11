//! The event's Kafka record (feature `record`): mapping between [`Record`] and rdkafka
//! messages. The client plumbing (configuration, context, topics) is
//! `platform::kafka`'s.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

use crate::envelope::Record;

/// Kafka headers for a record.
pub fn owned_headers(headers: &[(String, Vec<u8>)]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |acc, (k, v)| {
            acc.insert(Header {
                key: k,
                value: Some(v),
            })
        },
    )
}

/// Copies a received message into a [`Record`] (key, value and headers).
pub fn record_of<M: Message>(message: &M) -> Record {
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}
