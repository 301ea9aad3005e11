//! Internal API keys, one per caller: a leaked key opens only the API of the caller it
//! belongs to. A server takes `INTERNAL_API_KEYS` (`caller:key,...`); a client names the
//! key it presents to each server (`USER_SERVICE_API_KEY`, `EVENT_CONSUMER_API_KEY`);
//! `INTERNAL_API_KEY` is the one-key shorthand that sets all of them.

use std::fmt;

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::setting::{ConfigError, Profile};

/// The development default, refused outside `ENV=development`.
pub const DEV_INTERNAL_API_KEY: &str = "dev-internal-api-key-change-me";

/// Shortest key accepted outside development.
pub const MIN_KEY_CHARS: usize = 16;

/// Who calls an internal API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Bff,
    EventConsumer,
    /// An operator's tools (scripts, curl).
    Ops,
}

impl Caller {
    pub const ALL: [Caller; 3] = [Caller::Bff, Caller::EventConsumer, Caller::Ops];

    pub fn name(self) -> &'static str {
        match self {
            Self::Bff => "bff",
            Self::EventConsumer => "event-consumer",
            Self::Ops => "ops",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name.trim())
    }
}

/// Compares a presented key with an expected one in constant time.
pub fn matches(expected: &SecretString, presented: &str) -> bool {
    // ct_eq on unequal lengths answers false without revealing where the bytes differ.
    expected
        .expose_secret()
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// Whether a key may be used outside development: not the dev key, long enough.
pub fn is_acceptable_outside_development(key: &SecretString) -> bool {
    let key = key.expose_secret();
    key != DEV_INTERNAL_API_KEY && key.chars().count() >= MIN_KEY_CHARS
}

/// Refuses `key` (named `setting`) outside development when it is missing or weak.
pub fn require_key(
    profile: Profile,
    setting: &str,
    key: Option<&SecretString>,
) -> Result<(), ConfigError> {
    let Some(key) = key else {
        return Err(ConfigError::Refused(format!(
            "{setting} is not set: give each internal caller a random key of {MIN_KEY_CHARS}+ \
             characters (e.g. `openssl rand -hex 32`), or INTERNAL_API_KEY for all of them"
        )));
    };
    if !profile.is_development() && !is_acceptable_outside_development(key) {
        return Err(ConfigError::Refused(format!(
            "ENV={} refuses {setting}: it is the development key or shorter than \
             {MIN_KEY_CHARS} characters (make one with `openssl rand -hex 32`)",
            profile.name()
        )));
    }
    Ok(())
}

/// The keys a server accepts, by caller: parsed once when the configuration loads, from
/// `INTERNAL_API_KEYS` and `INTERNAL_API_KEY`.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(try_from = "KeySettings")]
pub struct ServerKeys {
    keys: Vec<(Caller, SecretString)>,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let callers: Vec<&str> = self.keys.iter().map(|(c, _)| c.name()).collect();
        f.debug_struct("ServerKeys")
            .field("callers", &callers)
            .finish_non_exhaustive()
    }
}

/// The two settings [`ServerKeys`] is read from.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct KeySettings {
    internal_api_key: Option<SecretString>,
    internal_api_keys: Option<SecretString>,
}

impl TryFrom<KeySettings> for ServerKeys {
    type Error = ConfigError;

    fn try_from(raw: KeySettings) -> Result<Self, ConfigError> {
        Self::parse(
            raw.internal_api_keys.as_ref(),
            raw.internal_api_key.as_ref(),
        )
    }
}

impl ServerKeys {
    /// From `INTERNAL_API_KEYS` (`caller:key` pairs) and the `INTERNAL_API_KEY` shorthand,
    /// which covers every caller the list does not name.
    pub fn parse(
        pairs: Option<&SecretString>,
        shorthand: Option<&SecretString>,
    ) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        if let Some(pairs) = pairs {
            for pair in pairs.expose_secret().split(',').map(str::trim) {
                if pair.is_empty() {
                    continue;
                }
                let (name, key) = pair.split_once(':').ok_or_else(|| {
                    ConfigError::Refused(
                        "INTERNAL_API_KEYS: each entry is caller:key (callers bff, event-consumer, ops)"
                            .into(),
                    )
                })?;
                let caller = Caller::parse(name).ok_or_else(|| {
                    ConfigError::Refused(format!(
                        "INTERNAL_API_KEYS: unknown caller {:?} (callers are bff, event-consumer, ops)",
                        name.trim()
                    ))
                })?;
                keys.push((caller, SecretString::from(key.trim().to_owned())));
            }
        }
        if let Some(shorthand) = shorthand {
            for caller in Caller::ALL {
                if !keys.iter().any(|(c, _)| *c == caller) {
                    keys.push((caller, shorthand.clone()));
                }
            }
        }
        Ok(Self { keys })
    }

    /// Refuses an empty set, and weak keys outside development.
    pub fn check(&self, profile: Profile) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return require_key(profile, "INTERNAL_API_KEYS", None);
        }
        for (caller, key) in &self.keys {
            require_key(
                profile,
                &format!("the internal key of caller {}", caller.name()),
                Some(key),
            )?;
        }
        Ok(())
    }

    /// The callers whose key was presented (several when they share one, as with the
    /// `INTERNAL_API_KEY` shorthand). Every configured key is compared, each in constant
    /// time, so timing tells nothing about which one (if any) matched.
    pub fn callers_of(&self, presented: &str) -> Vec<Caller> {
        let mut found = Vec::new();
        for (caller, key) in &self.keys {
            if matches(key, presented) {
                found.push(*caller);
            }
        }
        found
    }

    /// The first caller whose key was presented.
    pub fn caller_of(&self, presented: &str) -> Option<Caller> {
        self.callers_of(presented).first().copied()
    }
}

/// `Authorization: Bearer <internal key>` on a server's API: the caller whose key was
/// presented. The server puts its [`ServerKeys`] into the request data for this check.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", checker = "caller_of_request")]
pub struct InternalKey(pub Vec<Caller>);

impl InternalKey {
    /// The caller, if it is one of `allowed`; any other caller's key, valid though it is,
    /// gets 403, so a leaked key opens only the routes its caller needs.
    pub fn permit(&self, allowed: &[Caller]) -> Result<Caller, crate::error::Failure> {
        if let Some(caller) = self.0.iter().find(|c| allowed.contains(c)) {
            return Ok(*caller);
        }
        let name = self.0.first().map_or("unknown", |c| c.name());
        tracing::warn!(
            caller = name,
            "403: this caller's internal key is not accepted on this route"
        );
        Err(crate::error::Failure::Forbidden(
            poem_openapi::payload::Json(crate::error::ErrorBody::new(
                "Forbidden",
                format!("The {name} key is not accepted on this route."),
            )),
        ))
    }
}

async fn caller_of_request(request: &Request, bearer: Bearer) -> Option<Vec<Caller>> {
    let callers = request.data::<ServerKeys>()?.callers_of(&bearer.token);
    (!callers.is_empty()).then_some(callers)
}

/// The key a client presents to one server: its own setting, else the shorthand.
pub fn client_key(
    profile: Profile,
    setting: &str,
    specific: Option<&SecretString>,
    shorthand: Option<&SecretString>,
) -> Result<SecretString, ConfigError> {
    let key = specific.or(shorthand);
    require_key(profile, setting, key)?;
    Ok(key.cloned().unwrap_or_else(|| SecretString::from("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn only_the_exact_key_matches() {
        let key = secret("s3cret-key-value");
        assert!(matches(&key, "s3cret-key-value"));
        assert!(!matches(&key, "s3cret-key-valuE"));
        assert!(!matches(&key, "s3cret"));
        assert!(!matches(&key, ""));
    }

    #[test]
    fn each_caller_has_its_own_key_and_the_shorthand_fills_the_rest() {
        let keys = ServerKeys::parse(
            Some(&secret(
                "bff:bff-key-0123456789abcdef, ops:ops-key-0123456789abcdef",
            )),
            Some(&secret("shared-key-0123456789abcdef")),
        )
        .unwrap();
        assert_eq!(
            keys.caller_of("bff-key-0123456789abcdef"),
            Some(Caller::Bff)
        );
        assert_eq!(
            keys.caller_of("ops-key-0123456789abcdef"),
            Some(Caller::Ops)
        );
        assert_eq!(
            keys.callers_of("shared-key-0123456789abcdef"),
            [Caller::EventConsumer]
        );
        let shared = ServerKeys::parse(None, Some(&secret("shared-key-0123456789abcdef"))).unwrap();
        assert_eq!(
            shared.callers_of("shared-key-0123456789abcdef"),
            Caller::ALL.to_vec()
        );
        assert_eq!(keys.caller_of("nope"), None);
        assert!(keys.check(Profile::Production).is_ok());
        assert!(!format!("{keys:?}").contains("bff-key"));
    }

    #[test]
    fn outside_development_weak_or_missing_keys_are_refused() {
        let dev = ServerKeys::parse(None, Some(&secret(DEV_INTERNAL_API_KEY))).unwrap();
        assert!(dev.check(Profile::Development).is_ok());
        assert!(dev.check(Profile::Docker).is_err());
        let short = ServerKeys::parse(Some(&secret("bff:short")), None).unwrap();
        assert!(short.check(Profile::Production).is_err());
        let none = ServerKeys::parse(None, None).unwrap();
        let error = none.check(Profile::Docker).unwrap_err().to_string();
        assert!(error.contains("INTERNAL_API_KEYS"), "{error}");
        assert!(ServerKeys::parse(Some(&secret("mallory:x")), None).is_err());
    }
}
