//! PASETO v4.public access and refresh tokens.
//!
//! pasetors checks the signature; everything else (times with a small leeway, issuer,
//! audience, `typ`, `sid`, `role`) is checked here, because pasetors knows nothing of
//! the custom claims and has no leeway. The footer carries `kid`, the PASERK id of the
//! signing key's public half; only configured public keys verify, and an unknown `kid`
//! fails closed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::Public;
use platform::wire::Role;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

/// Clock skew tolerated on `exp`, `nbf` and `iat` between this process and others.
pub const LEEWAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} is not a valid PASERK k4 key")]
    Invalid(&'static str),
    #[error("the signing key's public half is not among TOKEN_PUBLIC_KEYS")]
    SigningKeyNotListed,
}

/// Why a token was refused. Callers answer every kind with the same 401; the kind is for
/// logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("wrong token type")]
    Type,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims the BFF signs and reads back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    pub iat: DateTime<Utc>,
    pub nbf: DateTime<Utc>,
    pub exp: DateTime<Utc>,
    pub jti: Uuid,
    pub role: Role,
    /// The session (refresh-token family) this token belongs to.
    pub sid: Uuid,
    pub typ: TokenType,
}

/// Whom a token is for.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub user: Uuid,
    pub role: Role,
    pub sid: Uuid,
}

#[derive(Serialize, Deserialize)]
struct Footer {
    kid: String,
}

/// A fresh key pair as PASERK strings: (`k4.secret.`, `k4.public.`, `k4.pid.`).
pub fn generate_paserk() -> Result<(String, String, String), KeyError> {
    let pair =
        AsymmetricKeyPair::<V4>::generate().map_err(|_| KeyError::Invalid("generated key"))?;
    let mut secret = String::new();
    let mut public = String::new();
    let mut kid = String::new();
    pair.secret
        .fmt(&mut secret)
        .map_err(|_| KeyError::Invalid("secret key"))?;
    pair.public
        .fmt(&mut public)
        .map_err(|_| KeyError::Invalid("public key"))?;
    Id::from(&pair.public)
        .fmt(&mut kid)
        .map_err(|_| KeyError::Invalid("key id"))?;
    Ok((secret, public, kid))
}

/// The `k4.pid.` id of a `k4.public.` PASERK.
pub fn public_kid(paserk: &str) -> Result<String, KeyError> {
    let key = AsymmetricPublicKey::<V4>::try_from(paserk.trim())
        .map_err(|_| KeyError::Invalid("public key"))?;
    kid_of(&key)
}

fn kid_of(public: &AsymmetricPublicKey<V4>) -> Result<String, KeyError> {
    let mut kid = String::new();
    Id::from(public)
        .fmt(&mut kid)
        .map_err(|_| KeyError::Invalid("key id"))?;
    Ok(kid)
}

/// The signing key and the keys accepted for verification, with the expected `iss`/`aud`.
pub struct TokenKeys {
    signing: AsymmetricSecretKey<V4>,
    signing_kid: String,
    verifying: HashMap<String, AsymmetricPublicKey<V4>>,
    issuer: String,
    audience: String,
    /// Claims of tokens whose signature already verified, by SHA-256 of the token (the
    /// token itself is not kept). The Ed25519 check was a quarter of the BFF's CPU on
    /// `/profile`; the claims are still checked on every use.
    verified: moka::sync::Cache<[u8; 32], Claims>,
}

/// Verified tokens remembered at most (bounded memory under a flood of tokens).
const VERIFIED_CAPACITY: u64 = 50_000;
/// And for at most this long (an access token lives 15 minutes by default).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .field("verifying", &self.verifying.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// `secret` is a `k4.secret.` PASERK; `publics` the `k4.public.` keys accepted (the
    /// signing key's own public half is always accepted, so a single key needs no list).
    pub fn new(
        secret: &str,
        publics: &[String],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let signing = AsymmetricSecretKey::<V4>::try_from(secret.trim())
            .map_err(|_| KeyError::Invalid("TOKEN_SECRET_KEY"))?;
        let own_public = AsymmetricPublicKey::<V4>::try_from(&signing)
            .map_err(|_| KeyError::Invalid("TOKEN_SECRET_KEY"))?;
        let signing_kid = kid_of(&own_public)?;
        let mut verifying = HashMap::new();
        for public in publics {
            let key = AsymmetricPublicKey::<V4>::try_from(public.trim())
                .map_err(|_| KeyError::Invalid("TOKEN_PUBLIC_KEYS"))?;
            verifying.insert(kid_of(&key)?, key);
        }
        if !publics.is_empty() && !verifying.contains_key(&signing_kid) {
            return Err(KeyError::SigningKeyNotListed);
        }
        verifying.insert(signing_kid.clone(), own_public);
        Ok(Self {
            signing,
            signing_kid,
            verifying,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// Claims for a new token of `typ` for `who`, valid from now for `ttl` (capped at
    /// `not_after`).
    pub fn claims(
        &self,
        typ: TokenType,
        who: Subject,
        jti: Uuid,
        ttl: Duration,
        not_after: Option<DateTime<Utc>>,
    ) -> Claims {
        let Subject { user, role, sid } = who;
        // Whole seconds: other PASETO v4 libraries compare times at second precision and
        // would see a fractional `nbf`/`iat` as "not yet valid" for up to a second.
        let now = Utc::now().trunc_subsecs(0);
        let mut exp = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        if let Some(limit) = not_after {
            exp = exp.min(limit).trunc_subsecs(0);
        }
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            iat: now,
            nbf: now,
            exp,
            jti,
            role,
            sid,
            typ,
        }
    }

    /// Signs `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let message = serde_json::to_vec(claims).map_err(|_| TokenError::Malformed)?;
        let footer = serde_json::to_vec(&Footer {
            kid: self.signing_kid.clone(),
        })
        .map_err(|_| TokenError::Malformed)?;
        PublicToken::sign(&self.signing, &message, Some(&footer), None)
            .map_err(|_| TokenError::Signature)
    }

    /// Verifies a token and every claim, expecting type `typ`.
    pub fn verify(&self, token: &str, typ: TokenType) -> Result<Claims, TokenError> {
        self.verify_at(token, typ, Utc::now())
    }

    /// [`TokenKeys::verify`] as of `now`.
    fn verify_at(
        &self,
        token: &str,
        typ: TokenType,
        now: DateTime<Utc>,
    ) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.trim().as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            // The same bytes, signature included, verified before: only the claims can
            // have become unacceptable since (expiry above all).
            self.check(&claims, typ, now)?;
            return Ok(claims);
        }
        let claims = self.verify_signature(token)?;
        self.check(&claims, typ, now)?;
        self.verified.insert(digest, claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.trim())
            .map_err(|_| TokenError::Malformed)?;
        let footer: Footer = serde_json::from_slice(untrusted.untrusted_footer())
            .map_err(|_| TokenError::Malformed)?;
        let key = self
            .verifying
            .get(&footer.kid)
            .ok_or(TokenError::UnknownKey)?;
        let trusted =
            PublicToken::verify(key, &untrusted, Some(untrusted.untrusted_footer()), None)
                .map_err(|_| TokenError::Signature)?;
        serde_json::from_str(trusted.payload()).map_err(|_| TokenError::Malformed)
    }

    fn check(&self, claims: &Claims, typ: TokenType, now: DateTime<Utc>) -> Result<(), TokenError> {
        let leeway = chrono::Duration::from_std(LEEWAY).unwrap_or(chrono::Duration::zero());
        if claims.exp + leeway <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf - leeway > now || claims.iat - leeway > now {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::Audience);
        }
        if claims.typ != typ {
            return Err(TokenError::Type);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (TokenKeys, String) {
        let (secret, public, _) = generate_paserk().unwrap();
        (
            TokenKeys::new(&secret, std::slice::from_ref(&public), "iss", "aud").unwrap(),
            public,
        )
    }

    /// Claims of a new token of `typ` for a fresh user and session, valid for a minute.
    fn claims_for(keys: &TokenKeys, typ: TokenType, not_after: Option<DateTime<Utc>>) -> Claims {
        let who = Subject {
            user: Uuid::new_v4(),
            role: Role::User,
            sid: Uuid::new_v4(),
        };
        keys.claims(typ, who, Uuid::new_v4(), Duration::from_secs(60), not_after)
    }

    fn access(keys: &TokenKeys) -> Claims {
        claims_for(keys, TokenType::Access, None)
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let (keys, _) = keys();
        let claims = access(&keys);
        let token = keys.sign(&claims).unwrap();
        assert!(token.starts_with("v4.public."));
        assert_eq!(keys.verify(&token, TokenType::Access).unwrap(), claims);
        assert_eq!(
            keys.verify(&token, TokenType::Refresh),
            Err(TokenError::Type)
        );
    }

    #[test]
    fn a_remembered_token_is_still_checked_and_a_changed_one_is_verified_again() {
        let (keys, _) = keys();
        let claims = access(&keys);
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.verify(&token, TokenType::Access).unwrap(), claims);
        // Same bytes from the cache: the type and then the expiry are checked again.
        assert_eq!(
            keys.verify(&token, TokenType::Refresh),
            Err(TokenError::Type)
        );
        let after_expiry =
            claims.exp + chrono::Duration::from_std(LEEWAY).unwrap() + chrono::Duration::seconds(1);
        assert_eq!(
            keys.verify_at(&token, TokenType::Access, after_expiry),
            Err(TokenError::Expired)
        );
        // One character changed: not the remembered token, so verified again and refused.
        let mut tampered = keys.sign(&access(&keys)).unwrap();
        assert!(keys.verify(&tampered, TokenType::Access).is_ok());
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(keys.verify(&tampered, TokenType::Access).is_err());
    }

    #[test]
    fn time_claims_are_whole_seconds_rfc3339_with_nbf_not_after_iat() {
        let (keys, _) = keys();
        // A session end with a fractional second caps `exp`.
        let not_after = Utc::now() + chrono::Duration::milliseconds(30_500);
        let refresh = claims_for(&keys, TokenType::Refresh, Some(not_after));
        let json = serde_json::to_value(&refresh).unwrap();
        for claim in ["iat", "nbf", "exp"] {
            let text = json[claim].as_str().unwrap();
            assert!(
                !text.contains('.'),
                "{claim} = {text} has fractional seconds"
            );
            assert!(
                DateTime::parse_from_rfc3339(text).is_ok(),
                "{claim} = {text}"
            );
        }
        assert!(refresh.nbf <= refresh.iat);
    }

    #[test]
    fn times_are_checked_with_leeway() {
        let (keys, _) = keys();
        let now = Utc::now();
        let mut claims = access(&keys);
        claims.exp = now - chrono::Duration::seconds(2);
        assert!(keys.check(&claims, TokenType::Access, now).is_ok());
        claims.exp = now - chrono::Duration::seconds(30);
        assert_eq!(
            keys.check(&claims, TokenType::Access, now),
            Err(TokenError::Expired)
        );
        let mut claims = access(&keys);
        claims.nbf = now + chrono::Duration::seconds(30);
        assert_eq!(
            keys.check(&claims, TokenType::Access, now),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn rotation_accepts_listed_keys_and_refuses_unknown_ones() {
        let (old_secret, old_public, _) = generate_paserk().unwrap();
        let (new_secret, new_public, _) = generate_paserk().unwrap();
        let old =
            TokenKeys::new(&old_secret, std::slice::from_ref(&old_public), "iss", "aud").unwrap();
        let token = old.sign(&access(&old)).unwrap();

        let rotated =
            TokenKeys::new(&new_secret, &[new_public.clone(), old_public], "iss", "aud").unwrap();
        assert!(rotated.verify(&token, TokenType::Access).is_ok());

        let retired = TokenKeys::new(&new_secret, &[new_public], "iss", "aud").unwrap();
        assert_eq!(
            retired.verify(&token, TokenType::Access),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_signing_key_missing_from_the_list_is_refused() {
        let (secret, _, _) = generate_paserk().unwrap();
        let (_, other_public, _) = generate_paserk().unwrap();
        assert!(matches!(
            TokenKeys::new(&secret, &[other_public], "iss", "aud"),
            Err(KeyError::SigningKeyNotListed)
        ));
    }
}
