//! W3C trace context (`traceparent`): parsed where it enters, continued with a new span
//! id for each hop, started fresh when absent or malformed.

use rand::RngExt as _;

/// A valid version-00 `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
/// lower-case, ids not all zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceParent {
    /// Parses a header value; `None` when it is not a valid version-00 trace context.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version == "00"
            && parts.next().is_none()
            && is_hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && is_hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| Self(value.to_owned()))
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The next hop of `incoming` (same trace, new span id), or a new sampled trace.
    pub fn next(incoming: Option<&str>) -> Self {
        let mut rng = rand::rng();
        let mut span: [u8; 8] = rng.random();
        if span == [0; 8] {
            span = [1; 8];
        }
        match incoming.and_then(Self::parse) {
            Some(parent) => {
                let flags = &parent.0[53..55];
                Self(format!("00-{}-{}-{flags}", parent.trace_id(), hex(&span)))
            }
            None => {
                let mut trace: [u8; 16] = rng.random();
                if trace == [0; 16] {
                    trace = [1; 16];
                }
                Self(format!("00-{}-{}-01", hex(&trace), hex(&span)))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

impl TraceParent {
    /// Runs `work` with `self` as the current request's trace context, which outgoing
    /// calls made inside it carry on ([`TraceParent::current`]).
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The trace context an event written now carries: the current span's when spans are
    /// exported (the transaction writing it), else the caller's `incoming` header when it
    /// is a valid one.
    pub fn for_event(incoming: Option<&str>) -> Option<String> {
        crate::telemetry::traceparent_of(&tracing::Span::current())
            .or_else(|| incoming.and_then(Self::parse).map(|t| t.0))
    }

    /// The trace context of the request being served, if any: the current span's when
    /// spans are exported (so the next hop is its child), else the request's own.
    pub fn current() -> Option<TraceParent> {
        if let Some(exported) = crate::telemetry::traceparent_of(&tracing::Span::current()) {
            return Some(Self(exported));
        }
        CURRENT.try_with(Clone::clone).ok()
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_parse() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(good).unwrap().as_str(), good);
        assert!(TraceParent::parse("garbage").is_none());
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_none()
        );
    }

    #[test]
    fn a_valid_trace_is_continued_and_garbage_replaced() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next_hop = TraceParent::next(Some(incoming));
        assert_eq!(next_hop.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(next_hop.as_str().ends_with("-01"));
        assert_ne!(next_hop.as_str(), incoming);
        let fresh = TraceParent::next(Some("garbage"));
        assert!(TraceParent::parse(fresh.as_str()).is_some());
        assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
