//! The shared key with which the BFF calls the internal services.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The development default, refused in production.
pub const DEV_INTERNAL_API_KEY: &str = "dev-internal-api-key-change-me";

/// Compares a presented key with the configured one in constant time.
pub fn matches(expected: &SecretString, presented: &str) -> bool {
    let expected = expected.expose_secret().as_bytes();
    // Lengths differ only for a wrong key; ct_eq handles unequal lengths without leaking
    // where the bytes differ.
    expected.ct_eq(presented.as_bytes()).into()
}

/// Whether the configured key may be used in production.
pub fn is_acceptable_for_production(key: &SecretString) -> bool {
    let key = key.expose_secret();
    key != DEV_INTERNAL_API_KEY && key.len() >= 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        let key = SecretString::from("s3cret-key-value");
        assert!(matches(&key, "s3cret-key-value"));
        assert!(!matches(&key, "s3cret-key-valuE"));
        assert!(!matches(&key, "s3cret"));
        assert!(!matches(&key, ""));
    }

    #[test]
    fn production_refuses_the_dev_key_and_short_keys() {
        assert!(!is_acceptable_for_production(&SecretString::from(
            DEV_INTERNAL_API_KEY
        )));
        assert!(!is_acceptable_for_production(&SecretString::from("short")));
        assert!(is_acceptable_for_production(&SecretString::from(
            "a-long-random-production-key"
        )));
    }
}
